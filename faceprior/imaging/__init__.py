"""General image code, used by every layer above it.

- :mod:`faceprior.imaging.pixels`: pixel conventions ([H, W, 3] RGB, uint8 / uint16 / float in
  [0, 1]) and conversions between them;
- :mod:`faceprior.imaging.io`: reading and writing image files;
- :mod:`faceprior.imaging.resize`: Lanczos, bilinear and bicubic resizing;
- :mod:`faceprior.imaging.files`: listing the image files of a folder (the one list of suffixes).

Nothing is imported here; import the module you need.
"""

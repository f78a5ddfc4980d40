"""Archive scale: ``faceprior restore --engine ray`` restores millions of photos on a Ray cluster
(:mod:`faceprior.archive.ray_restore`), resumable through a manifest (:mod:`faceprior.archive.manifest`).
Needs the ``faceprior[ray]`` extra."""

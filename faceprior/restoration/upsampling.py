"""Background upsampling: the whole photo is enlarged by the output scale before the restored
faces are pasted back (faceprior.face.paste).

Every upsampler follows the pixel-centre convention of ``faceprior.face.align.scale_affine``
(see :mod:`faceprior.imaging.resize`): Lanczos-3 by default, or a super-resolution network
(Real-ESRGAN x2) run in tiles.
"""

from __future__ import annotations

from typing import Optional, Protocol, runtime_checkable

import numpy as np
import torch

from faceprior.errors import OptionError
from faceprior.imaging.pixels import from_float01, to_float01
from faceprior.imaging.resize import resize_lanczos, upscale_lanczos, upscaled_size
from faceprior.models.loading import resolve_model
from faceprior.models.rrdbnet import padding_multiple, upsample_tiled


@runtime_checkable
class Upsampler(Protocol):
    """Anything that enlarges a whole photo: ``upsample(image, scale) -> image``.

    image: [H, W, 3] RGB, uint8, uint16 or float in [0, 1]. Returns [round(H * scale),
    round(W * scale), 3] of the same dtype, following the pixel-centre convention above.
    """

    def upsample(self, image: np.ndarray, scale: float) -> np.ndarray:
        ...


class LanczosUpsampler:
    """The default background upsampler: Lanczos-3 resizing (``upscale_lanczos``)."""

    def upsample(self, image: np.ndarray, scale: float) -> np.ndarray:
        return upscale_lanczos(image, scale)


class NetworkUpsampler:
    """A super-resolution network (e.g. Real-ESRGAN's RRDBNet x2) as an Upsampler.

    model: maps [1, 3, h, w] float RGB in [0, 1] to [1, 3, h * model_scale, w * model_scale].
    model_scale: the network's fixed factor. Other requested scales resize the network output
        with Lanczos (as Real-ESRGAN's ``outscale`` does).
    tile_size, tile_pad: run the network on tile_size x tile_size tiles (0: whole image) each
        seen with tile_pad pixels of context, to bound memory on large photos
        (``faceprior.models.rrdbnet.upsample_tiled`` does the tiling).
    pad_multiple: inputs are reflect-padded to a multiple of this; default ``model.unshuffle``
        (RRDBNet: 2 for x2, whose pixel-unshuffle needs even sizes; 4 for x1), else 1.
    dtype: torch dtype to run the network in (e.g. torch.float16 on GPU); default the model's.
    """

    def __init__(self, model: torch.nn.Module, model_scale: int, tile_size: int = 400,
                 tile_pad: int = 10, pad_multiple: Optional[int] = None, dtype: Optional[torch.dtype] = None):
        parameter = next(model.parameters(), None)
        self.device = parameter.device if parameter is not None else torch.device("cpu")
        self.dtype = dtype or (parameter.dtype if parameter is not None else torch.float32)
        self.model = model.eval().to(self.dtype)
        self.model_scale = int(model_scale)
        self.tile_size = int(tile_size)
        self.tile_pad = int(tile_pad)
        self.pad_multiple = grid = padding_multiple(model, pad_multiple)
        if self.tile_size < 0 or self.tile_pad < 0 or self.tile_size % grid or self.tile_pad % grid:
            raise OptionError(f"tile size and tile padding must be multiples of {grid} and >= 0, "
                             f"got {self.tile_size} and {self.tile_pad}")

    @torch.no_grad()
    def upsample_native(self, image: np.ndarray) -> np.ndarray:
        """[H, W, 3] uint8/uint16/float[0, 1] -> [H * model_scale, W * model_scale, 3] float32 in [0, 1]."""
        x = torch.from_numpy(to_float01(np.asarray(image))).permute(2, 0, 1)[None].to(self.device, self.dtype)
        out = upsample_tiled(self.model, x, tile=self.tile_size, tile_pad=self.tile_pad,
                             scale=self.model_scale, pad_multiple=self.pad_multiple)
        return out[0].float().clamp_(0, 1).permute(1, 2, 0).cpu().numpy()

    def upsample(self, image: np.ndarray, scale: float) -> np.ndarray:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            return upscale_lanczos(image, scale)
        native = self.upsample_native(image)
        height, width = image.shape[:2]
        out_h, out_w = upscaled_size(height, width, scale)
        if native.shape[:2] != (out_h, out_w):
            native = resize_lanczos(native, out_h, out_w, scale / self.model_scale)
        return from_float01(native, image.dtype)


# Real-ESRGAN x2 (BSD-3-Clause), the background upsampler of the official GFP-GAN command line:
# its faceprior.weights.catalogue entry.
REALESRGAN_X2PLUS = "realesrgan-x2plus"
DEFAULT_TILE = 400
DEFAULT_TILE_PAD = 10


def make_realesrgan_upsampler(device: str | torch.device = "cpu", tile: int = DEFAULT_TILE,
                              tile_pad: int = DEFAULT_TILE_PAD, half: Optional[bool] = None,
                              cache_dir: Optional[str] = None) -> NetworkUpsampler:
    """Real-ESRGAN x2 (RRDBNet, 23 blocks) with ``RealESRGAN_x2plus.pth`` (``params_ema``, else
    ``params``) from the weight cache or downloaded, set up as the official GFP-GAN command line
    does: tiles of ``tile`` pixels (0: whole image) with ``tile_pad`` pixels of context, no pre-pad,
    float16 on CUDA (``half=None``: float16 exactly when ``device`` is a CUDA device).
    Factors other than 2 resize the x2 output with Lanczos.
    """
    device = torch.device(device)
    half = device.type == "cuda" if half is None else half
    descriptor = resolve_model(REALESRGAN_X2PLUS, device=device, cache_dir=cache_dir)
    return NetworkUpsampler(descriptor.network, model_scale=descriptor.options["scale"], tile_size=tile,
                            tile_pad=tile_pad, dtype=torch.float16 if half else torch.float32)


def make_upsampler(name: str = "lanczos", device: str | torch.device = "cpu", tile: int = DEFAULT_TILE,
                   cache_dir: Optional[str] = None) -> Upsampler:
    """A background upsampler by name: ``"lanczos"`` (default, no weights) or ``"realesrgan"``
    (Real-ESRGAN x2, RealESRGAN_x2plus.pth, run in ``tile`` x ``tile`` tiles, 0 = whole image;
    factors other than 2 are resized from its x2 output with Lanczos)."""
    if name == "lanczos":
        return LanczosUpsampler()
    if name == "realesrgan":
        return make_realesrgan_upsampler(device=device, tile=tile, cache_dir=cache_dir)
    raise OptionError(f"unknown background upsampler {name!r} (use 'lanczos' or 'realesrgan')")

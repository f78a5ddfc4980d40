"""RRDBNet (ESRGAN / Real-ESRGAN generator) and tiled inference for large images.

GFP-GAN upsamples the background of a photo with Real-ESRGAN x2 (``RealESRGAN_x2plus.pth``:
``RRDBNet(scale=2)`` wrapped in ``{'params_ema': state_dict}``). Module names follow basicsr's
``RRDBNet``, so those state dicts load with ``strict=True``.

Scales 2 and 1 first pixel-unshuffle the input by 2 and 4 (so ``conv_first`` takes 12 or 48
channels for RGB) and then run the same x4 trunk, giving x2 and x1 overall.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from faceprior.models.architecture import Architecture, ArchitectureError, Shapes, indices, require

# Pixel-unshuffle factor applied to the input for each supported output scale.
UNSHUFFLE_FACTOR = {4: 1, 2: 2, 1: 4}


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs, each fed the concatenation of the input and all earlier outputs.

    LeakyReLU(0.2) after the first four; returns ``x + 0.2 * conv5(...)``. [B, F, H, W] -> same.
    """

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            features.append(F.leaky_relu(conv(torch.cat(features, dim=1)), 0.2))
        return self.conv5(torch.cat(features, dim=1)) * 0.2 + x


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks, ``x + 0.2 * rdb3(rdb2(rdb1(x)))``."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN generator with basicsr's names (the Real-ESRGAN x4 / x2 / x1 models).

    ``forward(x)``: x [B, num_in_ch, H, W] in [0, 1] -> [B, num_out_ch, H * scale, W * scale]
    (not clamped). For ``scale=2`` H and W must be even, for ``scale=1`` multiples of 4.
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
    ):
        super().__init__()
        if scale not in UNSHUFFLE_FACTOR:
            raise ValueError(f"RRDBNet supports scale 1, 2 or 4, got {scale}")
        self.scale = scale
        self.unshuffle = UNSHUFFLE_FACTOR[scale]
        self.conv_first = nn.Conv2d(num_in_ch * self.unshuffle**2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unshuffle > 1:
            if x.shape[2] % self.unshuffle or x.shape[3] % self.unshuffle:
                raise ValueError(
                    f"RRDBNet(scale={self.scale}) needs H and W divisible by {self.unshuffle}, got {list(x.shape[2:])}"
                )
            # channel c * r * r + i * r + j holds pixel (r * y + i, r * x + j) of channel c, as basicsr.
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))


def padding_multiple(model: nn.Module, pad_multiple: Optional[int] = None) -> int:
    """The multiple :func:`upsample_tiled` pads inputs to: ``pad_multiple`` if given, else
    ``model.unshuffle`` (RRDBNet), else 1."""
    grid = int(getattr(model, "unshuffle", 1) if pad_multiple is None else pad_multiple)
    if grid < 1:
        raise ValueError(f"pad_multiple must be >= 1, got {grid}")
    return grid


@torch.no_grad()
def upsample_tiled(
    model: nn.Module,
    image: torch.Tensor,
    tile: int = 400,
    tile_pad: int = 10,
    pre_pad: int = 0,
    scale: Optional[int] = None,
    pad_multiple: Optional[int] = None,
) -> torch.Tensor:
    """Run an upsampler on a large image tile by tile, as Real-ESRGAN's ``RealESRGANer`` does.

    This is the one tiled-inference routine of the package: the background upsampler
    (``faceprior.restoration.upsampling.NetworkUpsampler``) runs its network through it.

    Args:
        model: maps [B, C, h, w] -> [B, C', h * scale, w * scale] (e.g. :class:`RRDBNet`).
        image: [B, C, H, W], for RRDBNet RGB in [0, 1].
        tile: side of the tiles the image is cut into (0: run the whole image at once).
        tile_pad: context in pixels added around each tile (cut at the image border) and cropped
            away from its output. Tiled output equals untiled output wherever ``tile_pad`` covers
            the network's receptive-field radius.
        pre_pad: reflection padding added at the bottom and right before processing and removed
            after (``RealESRGANer(pre_pad=...)``; GFP-GAN uses 0).
        scale: output scale; default ``model.scale``.
        pad_multiple: the image is reflection-padded at the bottom/right to a multiple of this
            (and cropped back after); default ``model.unshuffle`` (RRDBNet: 2 for scale 2, 4 for
            scale 1, as RealESRGANer pads), else 1. ``tile`` and ``tile_pad`` must be multiples of
            it so that every tile stays on the pixel-unshuffle grid.

    The tiles (and the output) are on the image's device and dtype; move the image to the model's
    first. Returns [B, C', H * scale, W * scale] (not clamped).
    """
    if scale is None:
        scale = getattr(model, "scale", None)
        if scale is None:
            raise ValueError("upsample_tiled: pass scale= for a model without a .scale attribute")
    if image.ndim != 4:
        raise ValueError(f"upsample_tiled: expected a [B, C, H, W] image, got {list(image.shape)}")
    if tile < 0 or tile_pad < 0 or pre_pad < 0:
        raise ValueError(f"upsample_tiled: tile, tile_pad and pre_pad must be >= 0, got {tile}, {tile_pad}, {pre_pad}")
    grid = padding_multiple(model, pad_multiple)
    if tile % grid or tile_pad % grid:
        raise ValueError(
            f"upsample_tiled: padding to multiples of {grid} needs tile and tile_pad divisible by {grid}, got {tile}, {tile_pad}"
        )

    height, width = image.shape[2:]
    x = image
    if pre_pad:
        x = F.pad(x, (0, pre_pad, 0, pre_pad), mode="reflect")
    mod_pad_h = (-x.shape[2]) % grid
    mod_pad_w = (-x.shape[3]) % grid
    if mod_pad_h or mod_pad_w:
        x = F.pad(x, (0, mod_pad_w, 0, mod_pad_h), mode="reflect")

    if tile == 0:
        output = model(x)
    else:
        padded_h, padded_w = x.shape[2:]
        output = None
        for y0 in range(0, padded_h, tile):
            for x0 in range(0, padded_w, tile):
                y1, x1 = min(y0 + tile, padded_h), min(x0 + tile, padded_w)
                py0, px0 = max(y0 - tile_pad, 0), max(x0 - tile_pad, 0)
                py1, px1 = min(y1 + tile_pad, padded_h), min(x1 + tile_pad, padded_w)
                out_tile = model(x[:, :, py0:py1, px0:px1])
                if output is None:
                    output = out_tile.new_zeros(x.shape[0], out_tile.shape[1], padded_h * scale, padded_w * scale)
                oy, ox = (y0 - py0) * scale, (x0 - px0) * scale
                output[:, :, y0 * scale : y1 * scale, x0 * scale : x1 * scale] = out_tile[
                    :, :, oy : oy + (y1 - y0) * scale, ox : ox + (x1 - x0) * scale
                ]
    return output[:, :, : height * scale, : width * scale]



def _rrdbnet_options(shapes: Shapes) -> dict:
    what = "RRDBNet"
    first = require(shapes, "conv_first.weight", what)
    num_out_ch = require(shapes, "conv_last.weight", what)[0]
    # conv_first takes num_in_ch * r * r channels (pixel-unshuffle by r = 1, 2, 4 for scale 4, 2, 1).
    # Real-ESRGAN models have num_in_ch == num_out_ch, which fixes r.
    scale_by_unshuffle_area = {1: 4, 4: 2, 16: 1}
    ratio = first[1] / num_out_ch
    if ratio not in scale_by_unshuffle_area:
        raise ArchitectureError(f"{what}: conv_first takes {first[1]} channels for {num_out_ch} output channels; cannot tell the scale")
    return dict(
        num_in_ch=num_out_ch,
        num_out_ch=num_out_ch,
        scale=scale_by_unshuffle_area[int(ratio)],
        num_feat=first[0],
        num_block=len(indices(shapes, r"body\.(\d+)\.rdb1\.conv1\.weight")),
        num_grow_ch=require(shapes, "body.0.rdb1.conv1.weight", what)[0],
    )


ARCHITECTURE = Architecture(
    name="RRDBNet",
    network=RRDBNet,
    purpose="upsampler",
    layout=lambda shapes: "conv_first.weight" in shapes and "body.0.rdb1.conv1.weight" in shapes,
    options=_rrdbnet_options,
    value_range=(0.0, 1.0),
    description="ESRGAN / Real-ESRGAN super-resolution network (background upsampling)",
)

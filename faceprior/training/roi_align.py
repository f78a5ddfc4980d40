"""RoIAlign in plain torch, with the semantics of ``torchvision.ops.roi_align``.

GFP-GAN crops the eyes and the mouth of the restored and ground-truth faces with torchvision's
RoIAlign (Mask R-CNN, He et al. 2017) before feeding them to the facial-component discriminators.
This module reproduces that operator without torchvision:

* a box (x1, y1, x2, y2) in input pixels is scaled by ``spatial_scale`` and, with ``aligned``,
  shifted by -0.5 px (pixel centres at integer + 0.5); without ``aligned`` boxes smaller than
  1 px are enlarged to 1 px;
* it is cut into ``output_size`` bins; each bin averages ``sampling_ratio`` x ``sampling_ratio``
  bilinear samples at the centres of a regular sub-grid (``sampling_ratio <= 0``: an adaptive
  ``ceil(roi_size / output_size)`` samples per axis and box);
* a sample further than 1 px outside the image contributes 0 (it still counts in the average); one
  within 1 px of the border is clamped onto the border pixels.

Bilinear interpolation and the bin average are separable, so the result is computed as two
1-D weighted gathers (rows, then columns), vectorised over boxes. It is differentiable with
respect to ``features`` (not the boxes, as in torchvision).
"""

from __future__ import annotations

from typing import Sequence, Union

import torch

__all__ = ["roi_align"]


def _axis_samples(start: torch.Tensor, bin_size: torch.Tensor, grid: torch.Tensor, grid_max: int,
                  num_bins: int, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bilinear taps along one axis for every (box, bin, sample).

    start, bin_size: [K] box start and bin size in feature pixels; grid: [K] samples per bin (may be
    0); size: the feature map's extent along this axis. Returns ``(low, high, w_low, w_high)``, each
    [K, num_bins * grid_max]: the two neighbouring pixel indices and their weights, already divided
    by the box's sample count (padding samples beyond ``grid`` and out-of-range samples weigh 0).
    """
    dtype = start.dtype
    bins = torch.arange(num_bins, device=start.device, dtype=dtype).view(1, -1, 1)
    steps = torch.arange(grid_max, device=start.device, dtype=dtype).view(1, 1, -1)
    start, bin_size, grid_f = start.view(-1, 1, 1), bin_size.view(-1, 1, 1), grid.to(dtype).view(-1, 1, 1)
    # Same operation order as torchvision: start + bin * bin_size + (step + 0.5) * bin_size / grid.
    pos = start + bins * bin_size + (steps + 0.5) * bin_size / grid_f
    valid = (steps < grid_f) & (pos >= -1.0) & (pos <= size)  # False for NaN positions too
    pos = torch.where(valid, pos, torch.zeros_like(pos)).clamp(min=0)
    low = pos.floor().long()
    at_edge = low >= size - 1
    low = torch.where(at_edge, torch.full_like(low, size - 1), low)
    high = torch.where(at_edge, low, low + 1)
    pos = torch.where(at_edge, low.to(dtype), pos)
    frac = pos - low.to(dtype)
    scale = torch.where(valid, 1.0 / grid_f.clamp(min=1), torch.zeros_like(pos))
    k = start.shape[0]
    return (low.reshape(k, -1), high.reshape(k, -1),
            ((1 - frac) * scale).reshape(k, -1), (frac * scale).reshape(k, -1))


def roi_align(features: torch.Tensor, boxes: torch.Tensor, output_size: Union[int, Sequence[int]],
              spatial_scale: float = 1.0, sampling_ratio: int = -1, aligned: bool = False) -> torch.Tensor:
    """Crop-and-resize boxes of a batch of feature maps (``torchvision.ops.roi_align``).

    Args:
        features: [B, C, H, W] any floating dtype.
        boxes: [K, 5] rows (batch_index, x1, y1, x2, y2), coordinates in input pixels (before
            ``spatial_scale``); the batch index is truncated to an integer.
        output_size: int or (out_h, out_w).
        spatial_scale: multiplies the box coordinates (e.g. 1/16 for a stride-16 feature map).
        sampling_ratio: samples per bin and axis; <= 0 for adaptive ``ceil(roi_size / out_size)``.
        aligned: shift the boxes by -0.5 px (pixel-exact alignment; torchvision's ``aligned=True``).
    Returns:
        [K, C, out_h, out_w], same dtype/device as ``features``; differentiable w.r.t. ``features``.
    """
    if features.dim() != 4:
        raise ValueError(f"roi_align expects features [B, C, H, W], got shape {list(features.shape)}")
    if boxes.dim() != 2 or boxes.shape[1] != 5:
        raise ValueError(f"roi_align expects boxes [K, 5] (batch_index, x1, y1, x2, y2), got shape {list(boxes.shape)}")
    sizes = (output_size, output_size) if isinstance(output_size, int) else tuple(int(s) for s in output_size)
    if len(sizes) != 2 or min(sizes) <= 0:
        raise ValueError(f"roi_align output_size must be a positive int or (out_h, out_w), got {output_size}")
    out_h, out_w = sizes
    batch, channels, height, width = features.shape
    num_boxes = boxes.shape[0]
    if num_boxes == 0:
        return features.new_zeros(num_boxes, channels, out_h, out_w)

    boxes = boxes.detach().to(device=features.device, dtype=features.dtype)
    batch_index = boxes[:, 0].long()
    if int(batch_index.min()) < 0 or int(batch_index.max()) >= batch:
        raise ValueError(f"roi_align box batch indices must be in [0, {batch - 1}], "
                         f"got {int(batch_index.min())}..{int(batch_index.max())}")

    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (boxes[:, i] * spatial_scale - offset for i in range(1, 5))
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:  # malformed boxes become 1x1
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    bin_h, bin_w = roi_h / out_h, roi_w / out_w
    if sampling_ratio > 0:
        grid_h = torch.full((num_boxes,), sampling_ratio, device=features.device, dtype=torch.long)
        grid_w = grid_h
    else:
        grid_h = torch.ceil(roi_h / out_h).long().clamp(min=0)
        grid_w = torch.ceil(roi_w / out_w).long().clamp(min=0)
    grid_h_max, grid_w_max = max(int(grid_h.max()), 1), max(int(grid_w.max()), 1)

    y_low, y_high, wy_low, wy_high = _axis_samples(y1, bin_h, grid_h, grid_h_max, out_h, height)
    x_low, x_high, wx_low, wx_high = _axis_samples(x1, bin_w, grid_w, grid_w_max, out_w, width)

    # Rows: [K, Sy, C, W] gathered from each box's own image, averaged over the samples of a bin.
    image = batch_index.view(-1, 1)
    rows = (features[image, :, y_low, :] * wy_low[..., None, None]
            + features[image, :, y_high, :] * wy_high[..., None, None])
    rows = rows.view(num_boxes, out_h, grid_h_max, channels, width).sum(2).permute(0, 2, 1, 3)  # [K, C, oh, W]

    # Columns: [K, C, oh, Sx], averaged over the samples of a bin.
    def columns(index: torch.Tensor) -> torch.Tensor:
        return rows.gather(3, index.view(num_boxes, 1, 1, -1).expand(-1, channels, out_h, -1))

    cols = columns(x_low) * wx_low.view(num_boxes, 1, 1, -1) + columns(x_high) * wx_high.view(num_boxes, 1, 1, -1)
    return cols.view(num_boxes, channels, out_h, out_w, grid_w_max).sum(-1)

"""Axis-aligned box utilities in torch: overlap measures, greedy non-maximum suppression,
square-ifying and clipping.

Boxes are float tensors ``[N, 4]`` holding ``(x1, y1, x2, y2)`` in continuous pixel coordinates:
``(x1, y1)`` is the top-left corner and ``(x2, y2)`` the bottom-right corner, so a box's width is
``x2 - x1`` (no "+1"). Boxes with ``x2 <= x1`` or ``y2 <= y1`` are empty (area 0).
"""

from __future__ import annotations

import torch

# Greedy NMS compares each block of this many boxes against itself in one [B, B] matrix and
# against the boxes already kept; memory is O(B * (B + kept)) instead of O(N^2).
_NMS_BLOCK = 512


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Area of each box. ``boxes``: [N, 4] -> [N]; empty boxes have area 0."""
    width = (boxes[:, 2] - boxes[:, 0]).clamp(min=0)
    height = (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    return width * height


def box_intersection(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """Pairwise intersection areas. ``boxes_a``: [N, 4], ``boxes_b``: [M, 4] -> [N, M]."""
    top_left = torch.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = torch.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    size = (bottom_right - top_left).clamp(min=0)
    return size[..., 0] * size[..., 1]


def box_iou(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """Pairwise intersection over union, in [0, 1]. [N, 4], [M, 4] -> [N, M].

    Pairs whose union is empty (two empty boxes) get 0.
    """
    inter = box_intersection(boxes_a, boxes_b)
    union = box_area(boxes_a)[:, None] + box_area(boxes_b)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(inter.dtype).tiny), 0.0)


def box_intersection_over_min(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """Pairwise intersection over the smaller of the two areas, in [0, 1]. [N, 4], [M, 4] -> [N, M].

    This is the "Min" overlap of the original MTCNN: a small box lying inside a large one
    scores 1 even though their IoU is small.
    """
    inter = box_intersection(boxes_a, boxes_b)
    smaller = torch.minimum(box_area(boxes_a)[:, None], box_area(boxes_b)[None, :])
    return torch.where(smaller > 0, inter / smaller.clamp(min=torch.finfo(inter.dtype).tiny), 0.0)


def _greedy_within_block(alive: torch.Tensor, suppresses: torch.Tensor) -> torch.Tensor:
    """Greedy suppression inside one block of boxes sorted by decreasing score.

    ``alive``: [B] bool, boxes not already suppressed by earlier blocks.
    ``suppresses``: [B, B] bool, ``suppresses[i, j]`` for i < j when box i would remove box j.
    Returns [B] bool, the greedy result: box j is kept iff it is alive and no kept box i < j
    suppresses it. That rule is a recursion in j, so it has exactly one solution, and the
    Jacobi iteration below reaches it (entry j is final after at most j + 1 rounds; real inputs
    settle in a handful of rounds because suppression chains are short).
    """
    suppresses = (suppresses & alive[:, None]).to(torch.float32)
    keep = alive.clone()
    while True:
        hit = (keep.to(torch.float32) @ suppresses) > 0
        new_keep = alive & ~hit
        if torch.equal(new_keep, keep):
            return keep
        keep = new_keep


def nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    *,
    over_min_area: bool = False,
) -> torch.Tensor:
    """Greedy non-maximum suppression.

    Visits boxes by decreasing score (ties: lower index first) and keeps a box unless it
    overlaps an already kept box by more than ``iou_threshold`` (strictly greater).

    Args:
        boxes: [N, 4] float, (x1, y1, x2, y2).
        scores: [N] float.
        iou_threshold: overlap above which the lower-scored box is removed.
        over_min_area: measure overlap as intersection over the smaller area (the MTCNN "Min"
            mode) instead of intersection over union.

    Returns:
        [K] int64 indices into ``boxes`` of the kept boxes, by decreasing score.
    """
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"nms: boxes must have shape [N, 4], got {tuple(boxes.shape)}")
    if scores.shape != boxes.shape[:1]:
        raise ValueError(f"nms: scores must have shape [{boxes.shape[0]}], got {tuple(scores.shape)}")
    overlap_fn = box_intersection_over_min if over_min_area else box_iou
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_boxes = boxes[order]
    kept_positions: list[torch.Tensor] = []
    kept_boxes = sorted_boxes[:0]
    for start in range(0, order.shape[0], _NMS_BLOCK):
        block = sorted_boxes[start : start + _NMS_BLOCK]
        alive = torch.ones(block.shape[0], dtype=torch.bool, device=boxes.device)
        if kept_boxes.shape[0] > 0:
            alive &= ~(overlap_fn(block, kept_boxes) > iou_threshold).any(dim=1)
        suppresses = torch.triu(overlap_fn(block, block) > iou_threshold, diagonal=1)
        keep = _greedy_within_block(alive, suppresses)
        positions = torch.nonzero(keep).flatten() + start
        kept_positions.append(positions)
        kept_boxes = torch.cat([kept_boxes, block[keep]])
    if not kept_positions:
        return order[:0]
    return order[torch.cat(kept_positions)]


def batched_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    group_ids: torch.Tensor,
    iou_threshold: float,
    *,
    over_min_area: bool = False,
) -> torch.Tensor:
    """Greedy NMS run independently within each group (e.g. each image of a batch).

    ``boxes`` [N, 4], ``scores`` [N], ``group_ids`` [N] int. Returns kept indices [K] int64, by
    decreasing score over all groups. Boxes of different groups are moved apart by a per-group
    offset so that they never overlap, and one NMS call handles all groups.
    """
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    span = (boxes.max() - boxes.min()).clamp(min=0) + 1
    shifted = boxes - boxes.min() + (group_ids.to(boxes.dtype) * span * 2)[:, None]
    return nms(shifted, scores, iou_threshold, over_min_area=over_min_area)


def square_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """Grow each box to a square of side max(width, height) with the same centre. [N, 4] -> [N, 4]."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half_side = (boxes[:, 2:] - boxes[:, :2]).max(dim=1, keepdim=True).values / 2
    return torch.cat([centre - half_side, centre + half_side], dim=1)


def apply_box_offsets(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Move each corner by an offset given in units of the box's width and height.

    ``boxes``: [N, 4]; ``offsets``: [N, 4] as (dx1, dy1, dx2, dy2) fractions. Returns [N, 4] with
    ``x1 + dx1 * w, y1 + dy1 * h, x2 + dx2 * w, y2 + dy2 * h`` (the MTCNN box regression).
    """
    size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    return boxes + offsets * size


def clip_boxes(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Clamp boxes to the image rectangle [0, width] x [0, height]. [N, 4] -> [N, 4]."""
    limits = boxes.new_tensor([width, height, width, height])
    return torch.minimum(boxes.clamp(min=0), limits)

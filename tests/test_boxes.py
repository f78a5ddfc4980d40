"""Box utilities: overlaps against hand-computed values, NMS against a brute-force reference."""

from __future__ import annotations

import pytest
import torch

from faceprior.face.boxes import (
    apply_box_offsets,
    batched_nms,
    box_area,
    box_intersection_over_min,
    box_iou,
    clip_boxes,
    nms,
    square_boxes,
)


def _overlap_reference(a: list[float], b: list[float], over_min_area: bool) -> float:
    """Overlap of two boxes in plain Python floats."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    denominator = min(area_a, area_b) if over_min_area else area_a + area_b - inter
    return inter / denominator if denominator > 0 else 0.0


def _nms_reference(boxes: torch.Tensor, scores: torch.Tensor, threshold: float, over_min_area: bool = False) -> list[int]:
    """Textbook greedy NMS: visit by decreasing score (ties: lower index first)."""
    box_list, score_list = boxes.tolist(), scores.tolist()
    order = sorted(range(len(score_list)), key=lambda i: (-score_list[i], i))
    kept: list[int] = []
    for i in order:
        if all(_overlap_reference(box_list[i], box_list[k], over_min_area) <= threshold for k in kept):
            kept.append(i)
    return kept


def _random_boxes(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes clustered around a few centres (so many overlap), float64, with some score ties."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.rand(max(1, count // 20), 2, generator=generator, dtype=torch.float64) * 200
    which = torch.randint(0, centres.shape[0], (count,), generator=generator)
    centre = centres[which] + torch.randn(count, 2, generator=generator, dtype=torch.float64) * 6
    half = 5 + torch.rand(count, 2, generator=generator, dtype=torch.float64) * 15
    boxes = torch.cat([centre - half, centre + half], dim=1)
    scores = torch.rand(count, generator=generator, dtype=torch.float64)
    if count:
        scores[::7] = scores[0]  # ties
    return boxes, scores


def test_overlaps_hand_computed():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[5.0, 5.0, 15.0, 15.0], [2.0, 2.0, 4.0, 4.0], [20.0, 0.0, 30.0, 10.0], [3.0, 3.0, 3.0, 9.0]])
    # Intersections 25, 4, 0, 0 (the last box is empty).
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[25 / 175, 4 / 100, 0.0, 0.0]]))
    torch.testing.assert_close(box_intersection_over_min(a, b), torch.tensor([[25 / 100, 1.0, 0.0, 0.0]]))
    torch.testing.assert_close(box_area(b), torch.tensor([100.0, 4.0, 100.0, 0.0]))
    # Two empty boxes: no division by zero.
    empty = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    assert box_iou(empty, empty).item() == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("count, seed", [(0, 0), (1, 1), (60, 2), (300, 3), (1300, 4)])
@pytest.mark.parametrize("threshold", [0.3, 0.7])
def test_nms_matches_brute_force(count, seed, threshold):
    boxes, scores = _random_boxes(count, seed)
    kept = nms(boxes, scores, threshold)
    assert kept.dtype == torch.int64
    assert kept.tolist() == _nms_reference(boxes, scores, threshold)
    if count > 100:
        assert 0 < len(kept) < count  # the clustered boxes really do suppress each other


@pytest.mark.parametrize("count, seed", [(80, 5), (700, 6)])
def test_nms_min_overlap_matches_brute_force(count, seed):
    boxes, scores = _random_boxes(count, seed)
    kept = nms(boxes, scores, 0.7, over_min_area=True)
    assert kept.tolist() == _nms_reference(boxes, scores, 0.7, over_min_area=True)
    # Intersection over the smaller area is >= IoU, so it suppresses at least as much.
    assert len(kept) <= len(nms(boxes, scores, 0.7))


def test_nms_keeps_contained_box_only_in_iou_mode():
    boxes = torch.tensor([[0.0, 0.0, 100.0, 100.0], [10.0, 10.0, 30.0, 30.0]])
    scores = torch.tensor([0.9, 0.8])
    assert nms(boxes, scores, 0.5).tolist() == [0, 1]  # IoU = 0.04
    assert nms(boxes, scores, 0.5, over_min_area=True).tolist() == [0]  # inside: overlap 1


def test_nms_rejects_bad_shapes():
    with pytest.raises(ValueError, match="boxes must have shape"):
        nms(torch.zeros(3, 5), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match="scores must have shape"):
        nms(torch.zeros(3, 4), torch.zeros(2), 0.5)


def test_batched_nms_is_nms_per_group():
    boxes, scores = _random_boxes(400, 7)
    groups = torch.randint(0, 3, (400,), generator=torch.Generator().manual_seed(8))
    kept = batched_nms(boxes, scores, groups, 0.5)
    expected = []
    for group in range(3):
        members = torch.nonzero(groups == group).flatten()
        expected += members[nms(boxes[members], scores[members], 0.5)].tolist()
    assert sorted(kept.tolist()) == sorted(expected)
    assert torch.all(scores[kept][:-1] >= scores[kept][1:])  # decreasing score
    assert batched_nms(boxes[:0], scores[:0], groups[:0], 0.5).numel() == 0


def test_square_offsets_and_clip():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0]])  # 20 wide, 40 high, centre (20, 40)
    torch.testing.assert_close(square_boxes(boxes), torch.tensor([[0.0, 20.0, 40.0, 60.0]]))
    offsets = torch.tensor([[0.1, -0.25, 0.5, 0.0]])
    torch.testing.assert_close(apply_box_offsets(boxes, offsets), torch.tensor([[12.0, 10.0, 40.0, 60.0]]))
    torch.testing.assert_close(
        clip_boxes(torch.tensor([[-5.0, 3.0, 120.0, 90.0]]), height=80, width=100),
        torch.tensor([[0.0, 3.0, 100.0, 80.0]]),
    )

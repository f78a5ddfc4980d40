"""roi_align against a slow, literal re-statement of torchvision's RoIAlign definition."""

from __future__ import annotations

import math

import pytest
import torch

from faceprior.training.roi_align import roi_align


def reference_roi_align(features: torch.Tensor, boxes: torch.Tensor, out_h: int, out_w: int, spatial_scale: float,
                        sampling_ratio: int, aligned: bool) -> torch.Tensor:
    """torchvision's CPU kernel, one output value at a time, in Python floats (float64)."""
    _, channels, height, width = features.shape
    data = features.double().tolist()
    out = torch.zeros(boxes.shape[0], channels, out_h, out_w, dtype=torch.float64)

    def bilinear(plane, y, x):
        if not (-1.0 <= y <= height and -1.0 <= x <= width):
            return 0.0
        y, x = max(y, 0.0), max(x, 0.0)
        y_low, x_low = int(y), int(x)
        if y_low >= height - 1:
            y_low = y_high = height - 1
            y = float(y_low)
        else:
            y_high = y_low + 1
        if x_low >= width - 1:
            x_low = x_high = width - 1
            x = float(x_low)
        else:
            x_high = x_low + 1
        ly, lx = y - y_low, x - x_low
        hy, hx = 1.0 - ly, 1.0 - lx
        return (hy * hx * plane[y_low][x_low] + hy * lx * plane[y_low][x_high]
                + ly * hx * plane[y_high][x_low] + ly * lx * plane[y_high][x_high])

    for k, (b, bx1, by1, bx2, by2) in enumerate(boxes.double().tolist()):
        offset = 0.5 if aligned else 0.0
        x1, y1 = bx1 * spatial_scale - offset, by1 * spatial_scale - offset
        x2, y2 = bx2 * spatial_scale - offset, by2 * spatial_scale - offset
        roi_w, roi_h = x2 - x1, y2 - y1
        if not aligned:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_h, bin_w = roi_h / out_h, roi_w / out_w
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / out_h)
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / out_w)
        count = max(grid_h * grid_w, 1)
        for c in range(channels):
            plane = data[int(b)][c]
            for ph in range(out_h):
                for pw in range(out_w):
                    total = 0.0
                    for iy in range(grid_h):
                        y = y1 + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                        for ix in range(grid_w):
                            x = x1 + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                            total += bilinear(plane, y, x)
                    out[k, c, ph, pw] = total / count
    return out


def random_boxes(generator: torch.Generator, batch: int, count: int, height: int, width: int) -> torch.Tensor:
    """Boxes of varied sizes, some sticking out of the image, some smaller than a pixel."""
    index = torch.randint(0, batch, (count,), generator=generator).double()
    x1 = torch.rand(count, generator=generator, dtype=torch.float64) * (width + 4) - 3
    y1 = torch.rand(count, generator=generator, dtype=torch.float64) * (height + 4) - 3
    w = torch.rand(count, generator=generator, dtype=torch.float64) * width * 0.9 + 0.2
    h = torch.rand(count, generator=generator, dtype=torch.float64) * height * 0.9 + 0.2
    w[0], h[0] = 0.4, 0.3  # sub-pixel box
    return torch.stack([index, x1, y1, x1 + w, y1 + h], dim=1)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
@pytest.mark.parametrize("spatial_scale", [1.0, 0.5])
def test_matches_reference_float64(aligned, sampling_ratio, spatial_scale):
    g = torch.Generator().manual_seed(1)
    features = torch.randn(2, 3, 11, 13, generator=g, dtype=torch.float64)
    boxes = random_boxes(g, 2, 7, 22, 26) if spatial_scale == 0.5 else random_boxes(g, 2, 7, 11, 13)
    out = roi_align(features, boxes, (3, 4), spatial_scale, sampling_ratio, aligned)
    ref = reference_roi_align(features, boxes, 3, 4, spatial_scale, sampling_ratio, aligned)
    assert out.shape == (7, 3, 3, 4) and out.dtype == torch.float64
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


def test_matches_reference_float32_square_output():
    g = torch.Generator().manual_seed(2)
    features = torch.randn(3, 2, 16, 16, generator=g)
    boxes = random_boxes(g, 3, 6, 16, 16).float()
    out = roi_align(features, boxes, 5)
    ref = reference_roi_align(features, boxes, 5, 5, 1.0, -1, False)
    assert out.dtype == torch.float32
    assert (out.double() - ref).abs().max() < 1e-5


def test_aligned_integer_box_is_a_plain_crop():
    # aligned=True, 1 sample per bin, one bin per pixel: samples fall exactly on pixel centres.
    features = torch.arange(2 * 3 * 8 * 9, dtype=torch.float32).view(2, 3, 8, 9)
    boxes = torch.tensor([[1, 2, 1, 6, 5], [0, 0, 0, 9, 8]], dtype=torch.float32)
    out_crop = roi_align(features, boxes[:1], (4, 4), sampling_ratio=1, aligned=True)
    torch.testing.assert_close(out_crop[0], features[1, :, 1:5, 2:6], rtol=0, atol=0)
    out_full = roi_align(features, boxes[1:], (8, 9), sampling_ratio=1, aligned=True)
    torch.testing.assert_close(out_full[0], features[0], rtol=0, atol=0)


def test_box_outside_image_gives_zeros_and_empty_boxes_give_empty_output():
    features = torch.randn(1, 2, 6, 6)
    far = torch.tensor([[0, 20.0, 20.0, 30.0, 30.0]])
    assert torch.count_nonzero(roi_align(features, far, 2)) == 0
    assert roi_align(features, torch.zeros(0, 5), (2, 3)).shape == (0, 2, 2, 3)


def test_bad_input_raises_one_line_errors():
    features = torch.randn(1, 2, 6, 6)
    with pytest.raises(ValueError, match="boxes"):
        roi_align(features, torch.zeros(3, 4), 2)
    with pytest.raises(ValueError, match="batch indices"):
        roi_align(features, torch.tensor([[1.0, 0, 0, 2, 2]]), 2)
    with pytest.raises(ValueError, match="features"):
        roi_align(features[0], torch.tensor([[0.0, 0, 0, 2, 2]]), 2)


@pytest.mark.parametrize("aligned,sampling_ratio", [(False, -1), (True, 2)])
def test_gradcheck(aligned, sampling_ratio):
    g = torch.Generator().manual_seed(3)
    features = torch.randn(2, 2, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    boxes = torch.tensor([[0, 0.3, 0.7, 4.2, 3.9], [1, -0.8, 1.1, 5.9, 5.6], [1, 2.2, 2.1, 2.5, 2.3]],
                         dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda f: roi_align(f, boxes, (3, 2), 1.0, sampling_ratio, aligned),
                                    (features,), eps=1e-6, atol=1e-8)


def test_gradient_matches_reference_weights():
    # d(sum of outputs)/d(features) is the total interpolation weight each pixel receives; compare
    # with the reference by linearity: the reference applied to one-hot images gives the same sums.
    g = torch.Generator().manual_seed(4)
    features = torch.randn(1, 1, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    boxes = torch.tensor([[0, -0.6, 0.4, 3.7, 4.4]], dtype=torch.float64)
    roi_align(features, boxes, 2).sum().backward()
    expected = torch.zeros(4, 5, dtype=torch.float64)
    for i in range(4):
        for j in range(5):
            one_hot = torch.zeros(1, 1, 4, 5, dtype=torch.float64)
            one_hot[0, 0, i, j] = 1
            expected[i, j] = reference_roi_align(one_hot, boxes, 2, 2, 1.0, -1, False).sum()
    torch.testing.assert_close(features.grad[0, 0], expected, rtol=0, atol=1e-12)

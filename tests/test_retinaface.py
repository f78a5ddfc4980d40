"""RetinaFace: facexlib key layout, anchors, box coding, detector pre/post-processing."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from faceprior.face.retinaface import (
    BGR_MEAN,
    AnchorHead,
    RetinaFace,
    RetinaFaceDetector,
    decode_boxes,
    decode_landmarks,
    encode_boxes,
    encode_landmarks,
    load_facexlib_state_dict,
    load_retinaface,
    num_prior_boxes,
    prior_boxes,
)
from faceprior.weights.checkpoint import CheckpointError


@pytest.fixture(scope="module")
def mobilenet() -> RetinaFace:
    torch.manual_seed(0)
    return RetinaFace("mobilenet0.25").eval()


def test_resnet50_state_dict_matches_manifest(reference_dir):
    manifest = json.loads((reference_dir / "manifests" / "RetinaFace_resnet50.json").read_text())
    model = RetinaFace("resnet50")
    got = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()]
    assert got == [entry[:3] for entry in manifest["entries"]]
    assert sum(p.numel() for p in model.parameters()) == manifest["num_params"]


def test_resnet50_forward_shapes():
    model = RetinaFace("resnet50").eval()
    with torch.no_grad():
        loc, probs, landmarks = model(torch.randn(2, 3, 40, 56))
    num = num_prior_boxes(40, 56)
    assert loc.shape == (2, num, 4) and probs.shape == (2, num, 2) and landmarks.shape == (2, num, 10)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, num))


def test_mobilenet_builds_with_facexlib_names(mobilenet):
    keys = list(mobilenet.state_dict())
    # Names of detection_mobilenet0.25_Final.pth after facexlib strips "module.".
    for key in [
        "body.stage1.0.0.weight",  # conv_bn(3, 8) conv
        "body.stage1.1.0.weight",  # first depthwise conv
        "body.stage1.1.3.weight",  # first pointwise conv
        "body.stage2.5.4.running_var",
        "body.stage3.1.3.weight",
        "fpn.output1.0.weight",
        "fpn.merge2.1.bias",
        "ssh3.conv7x7_3.1.weight",
        "LandmarkHead.2.conv1x1.bias",
    ]:
        assert key in keys
    assert not any(k.startswith(("body.avg", "body.fc")) for k in keys)
    assert mobilenet.state_dict()["body.stage1.1.0.weight"].shape == (8, 1, 3, 3)
    assert mobilenet.state_dict()["fpn.output3.0.weight"].shape == (64, 256, 1, 1)
    assert mobilenet.state_dict()["ssh1.conv3X3.0.weight"].shape == (32, 64, 3, 3)
    assert sum(p.numel() for p in mobilenet.parameters()) == 426_608
    with torch.no_grad():
        loc, probs, landmarks = mobilenet(torch.randn(1, 3, 33, 47))
    assert loc.shape == (1, num_prior_boxes(33, 47), 4)
    assert landmarks.shape == (1, num_prior_boxes(33, 47), 10)


def test_unknown_network_is_rejected():
    with pytest.raises(ValueError, match="unknown RetinaFace network"):
        RetinaFace("resnet18")


@pytest.mark.parametrize("height, width", [(64, 64), (33, 47), (100, 17)])
def test_prior_box_count_formula(height, width):
    expected = sum(2 * math.ceil(height / s) * math.ceil(width / s) for s in (8, 16, 32))
    assert num_prior_boxes(height, width) == expected
    assert prior_boxes(height, width).shape == (expected, 4)


def test_prior_boxes_match_facexlib_loop():
    height, width = 37, 50
    anchors = []
    for step, sizes in zip((8, 16, 32), ((16, 32), (64, 128), (256, 512))):
        for i in range(math.ceil(height / step)):
            for j in range(math.ceil(width / step)):
                for size in sizes:
                    anchors.append([(j + 0.5) * step / width, (i + 0.5) * step / height, size / width, size / height])
    assert torch.equal(prior_boxes(height, width), torch.tensor(anchors, dtype=torch.float32))


def test_head_output_order_matches_priors():
    """Anchor p of the head output must belong to the cell and size of prior p."""
    rows, cols = 3, 5
    head = AnchorHead(in_channels=2, values_per_anchor=2)
    with torch.no_grad():
        head.conv1x1.weight.zero_()
        head.conv1x1.bias.zero_()
        # anchor a, value 0 <- row index; value 1 <- column index + 100 * anchor
        for anchor in range(2):
            head.conv1x1.weight[2 * anchor + 0, 0] = 1
            head.conv1x1.weight[2 * anchor + 1, 1] = 1
            head.conv1x1.bias[2 * anchor + 1] = 100 * anchor
        row_index, col_index = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
        grid = torch.stack([row_index, col_index]).float()
        out = head(grid[None])[0]
    priors = prior_boxes(rows * 8, cols * 8, min_sizes=((16, 32),), steps=(8,))
    row = priors[:, 1] * rows - 0.5
    col = priors[:, 0] * cols - 0.5
    anchor = (priors[:, 2] * cols * 8 == 32).float()
    torch.testing.assert_close(out[:, 0], row)
    torch.testing.assert_close(out[:, 1], col + 100 * anchor)


def test_box_and_landmark_coding_round_trip():
    generator = torch.Generator().manual_seed(0)
    priors = prior_boxes(64, 96)
    num = priors.shape[0]
    top_left = torch.rand(num, 2, generator=generator) * 0.8
    boxes = torch.cat([top_left, top_left + 0.05 + torch.rand(num, 2, generator=generator) * 0.3], dim=1)
    torch.testing.assert_close(decode_boxes(encode_boxes(boxes, priors), priors), boxes, atol=1e-6, rtol=0)
    loc = torch.randn(2, num, 4, generator=generator)
    torch.testing.assert_close(encode_boxes(decode_boxes(loc, priors), priors), loc, atol=2e-4, rtol=0)
    points = torch.rand(num, 5, 2, generator=generator)
    torch.testing.assert_close(decode_landmarks(encode_landmarks(points, priors), priors), points, atol=1e-6, rtol=0)


def test_decode_hand_computed():
    priors = torch.tensor([[0.5, 0.25, 0.2, 0.4]])
    loc = torch.tensor([[1.0, -2.0, math.log(2) / 0.2, 0.0]])
    # centre (0.5 + 0.1 * 0.2, 0.25 - 0.2 * 0.4) = (0.52, 0.17); size (0.4, 0.4)
    torch.testing.assert_close(decode_boxes(loc, priors), torch.tensor([[0.32, -0.03, 0.72, 0.37]]))
    pred = torch.tensor([[1.0, 0.0, 0.0, 1.0, -1.0, -1.0, 0.0, 0.0, 2.0, 0.5]])
    expected = torch.tensor([[[0.52, 0.25], [0.5, 0.29], [0.48, 0.21], [0.5, 0.25], [0.54, 0.27]]])
    torch.testing.assert_close(decode_landmarks(pred, priors), expected)


class _FixedOutputs(nn.Module):
    """Stands in for RetinaFace: returns fixed (loc, probs, landmarks) and records its input."""

    def __init__(self, loc, probs, landmarks):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.outputs = (loc[None], probs[None], landmarks[None])
        self.seen = None

    def forward(self, x):
        self.seen = x
        return self.outputs


def test_detector_preprocessing_decoding_and_nms():
    height, width = 64, 80
    priors = prior_boxes(height, width)
    num = priors.shape[0]
    loc = torch.zeros(num, 4)
    landmarks = torch.zeros(num, 10)
    face = torch.zeros(num)
    # Three anchors of the 16 px level-0 size, cells (row 3, col 4), (3, 5) and (3, 6):
    # centres 8 px apart -> 16 x 16 boxes overlapping by 8 px.
    index = {col: 2 * (3 * math.ceil(width / 8) + col) for col in (4, 5, 6)}
    face[index[4]], face[index[5]], face[index[6]] = 0.99, 0.95, 0.9
    landmarks[index[4]] = torch.tensor([1.0, 0.0] * 5)  # every point 0.1 * 16 = 1.6 px right of the centre
    probs = torch.stack([1 - face, face], dim=1)
    model = _FixedOutputs(loc, probs, landmarks)
    image = np.random.default_rng(0).integers(0, 256, size=(height, width, 3), dtype=np.uint8)

    detections = RetinaFaceDetector(model).detect(image, conf_threshold=0.5, nms_threshold=0.4)

    # Network input: BGR float minus (104, 117, 123).
    expected_input = torch.from_numpy(image[:, :, ::-1].astype(np.float32)).permute(2, 0, 1)
    expected_input = expected_input - torch.tensor(BGR_MEAN).view(3, 1, 1)
    assert torch.equal(model.seen[0], expected_input)
    # IoU of neighbours with facexlib's +1 widths: 9*17 / (2*17*17 - 9*17) = 0.36 <= 0.4 -> all kept.
    # (Without the +1 it would be 8*16 / (2*256 - 128) = 0.333, also kept; see the next test.)
    np.testing.assert_allclose(detections.scores, [0.99, 0.95, 0.9], rtol=1e-6)
    np.testing.assert_allclose(
        detections.boxes, [[28, 20, 44, 36], [36, 20, 52, 36], [44, 20, 60, 36]], atol=1e-4
    )
    assert detections.landmarks.shape == (3, 5, 2) and detections.landmarks.dtype == np.float32
    np.testing.assert_allclose(detections.landmarks[0], [[37.6, 28.0]] * 5, atol=1e-4)


def test_detector_nms_uses_inclusive_pixel_areas():
    """Two 16 px boxes shifted by 7 px: IoU 0.391 without "+1" (kept), 0.416 with it (suppressed)."""
    height, width = 64, 64
    priors = prior_boxes(height, width)
    num = priors.shape[0]
    loc = torch.zeros(num, 4)
    face = torch.zeros(num)
    first = 2 * (3 * 8 + 3)  # cell (3, 3): box [20, 20, 36, 36]
    second = 2 * (3 * 8 + 4)  # cell (3, 4): box [28, 20, 44, 36], moved 1 px left below
    loc[second, 0] = -1.0 / (0.1 * 16 / width * width)  # centre x -1 px
    face[first], face[second] = 0.99, 0.98
    model = _FixedOutputs(loc, torch.stack([1 - face, face], 1), torch.zeros(num, 10))
    image = np.zeros((height, width, 3), dtype=np.uint8)
    detections = RetinaFaceDetector(model).detect(image, conf_threshold=0.5, nms_threshold=0.4)
    np.testing.assert_allclose(detections.boxes, [[20, 20, 36, 36]], atol=1e-4)
    # Above the inclusive IoU both survive.
    both = RetinaFaceDetector(model).detect(image, conf_threshold=0.5, nms_threshold=0.42)
    assert len(both.scores) == 2


def test_detector_end_to_end_random_weights(mobilenet):
    image = np.random.default_rng(1).integers(0, 256, size=(72, 96, 3), dtype=np.uint8)
    detector = RetinaFaceDetector(mobilenet)
    detections = detector.detect(image, conf_threshold=0.3)
    n = len(detections.scores)
    assert detections.boxes.shape == (n, 4) and detections.landmarks.shape == (n, 5, 2)
    assert np.all(detections.scores > 0.3) and np.all(np.diff(detections.scores) <= 0)
    # Kept boxes overlap each other by at most the NMS threshold ("+1" areas).
    b = detections.boxes.astype(np.float64)
    for i in range(n):
        for j in range(i + 1, n):
            iw = max(0.0, min(b[i, 2], b[j, 2]) - max(b[i, 0], b[j, 0]) + 1)
            ih = max(0.0, min(b[i, 3], b[j, 3]) - max(b[i, 1], b[j, 1]) + 1)
            area = lambda k: (b[k, 2] - b[k, 0] + 1) * (b[k, 3] - b[k, 1] + 1)  # noqa: E731
            assert iw * ih / (area(i) + area(j) - iw * ih) <= 0.4 + 1e-6
    # Same numbers as running the network and decoding by hand.
    x = torch.from_numpy(image[:, :, ::-1].astype(np.float32)).permute(2, 0, 1)[None]
    with torch.no_grad():
        loc, probs, _ = mobilenet(x - torch.tensor(BGR_MEAN).view(1, 3, 1, 1))
    scores = probs[0, :, 1]
    assert n > 0 and np.isclose(detections.scores[0], scores.max().item())


def test_detector_blank_image_high_threshold_is_empty(mobilenet):
    model = RetinaFace("mobilenet0.25").eval()
    model.load_state_dict(mobilenet.state_dict())
    with torch.no_grad():
        for head in model.ClassHead:
            head.conv1x1.weight.zero_()
            head.conv1x1.bias.copy_(torch.tensor([5.0, -5.0, 5.0, -5.0]))  # face probability ~4.5e-5
    detections = RetinaFaceDetector(model).detect(np.full((48, 64, 3), 128, dtype=np.uint8), conf_threshold=0.97)
    assert detections.boxes.shape == (0, 4) and detections.boxes.dtype == np.float32
    assert detections.scores.shape == (0,)
    assert detections.landmarks.shape == (0, 5, 2)


def test_detector_rejects_non_rgb(mobilenet):
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        RetinaFaceDetector(mobilenet).detect(np.zeros((16, 16), dtype=np.uint8))


def test_loading_module_prefix_and_missing_num_batches_tracked(mobilenet):
    torch.manual_seed(1)
    source = RetinaFace("mobilenet0.25")
    state = {f"module.{k}": v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    model = load_retinaface(state)
    assert model.network == "mobilenet0.25" and not model.training
    for key, value in source.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(model.state_dict()[key], value)


def test_loading_rejects_mismatches(mobilenet, tmp_path):
    state = dict(mobilenet.state_dict())
    wrong_shape = dict(state, **{"fpn.output1.0.weight": torch.zeros(64, 65, 1, 1)})
    with pytest.raises(CheckpointError, match="fpn.output1.0.weight has shape"):
        load_facexlib_state_dict(RetinaFace("mobilenet0.25"), wrong_shape, "x.pth")
    missing = {k: v for k, v in state.items() if k != "ssh1.conv3X3.1.running_mean"}
    with pytest.raises(CheckpointError, match="1 missing keys"):
        load_facexlib_state_dict(RetinaFace("mobilenet0.25"), missing)
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match=f"{path.name}: not a RetinaFace state dict"):
        load_retinaface(str(path))

"""FaceDataset and facial component boxes (faceprior.training.dataset)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from faceprior.training.dataset import (
    ComponentBoxes,
    ComponentBoxFile,
    DatasetError,
    FaceDataset,
    boxes_from_landmarks,
    component_locations,
    compute_component_boxes,
    load_component_boxes,
    load_official_component_file,
)
from faceprior.training.degradations import DegradationConfig, read_float_image

NUM_FACES = 6
NO_GRAY = DegradationConfig(gray_prob=None)
# Boxes in a 512 frame, like the official file: (x, y, half_len)
BOXES_512 = ComponentBoxes(left_eye=(200.0, 240.0, 20.0), right_eye=(320.0, 244.0, 24.0), mouth=(256.0, 370.0, 40.0))


@pytest.fixture(scope="module")
def face_folder(data_dir, tmp_path_factory):
    """A folder of symbolic links to a few training faces (numeric names, as FFHQ's)."""
    folder = tmp_path_factory.mktemp("faces")
    for path in sorted((data_dir / "faces-train-256").glob("*.jpg"))[:NUM_FACES]:
        (folder / path.name).symlink_to(path)
    return folder


@pytest.fixture(scope="module")
def box_file(face_folder):
    names = sorted(p.name for p in face_folder.iterdir())
    return ComponentBoxFile(frame_size=512, boxes={name: BOXES_512 for name in names})


def to_unit(tensor: torch.Tensor) -> np.ndarray:
    """[3, H, W] in [-1, 1] -> [H, W, 3] in [0, 1]."""
    return (tensor * 0.5 + 0.5).permute(1, 2, 0).numpy()


def test_items_have_official_shapes_and_ranges(face_folder, box_file):
    dataset = FaceDataset(face_folder, component_boxes=box_file)
    assert len(dataset) == NUM_FACES
    item = dataset[0]
    assert set(item) == {"lq", "gt", "path", "loc_left_eye", "loc_right_eye", "loc_mouth"}
    for key in ("lq", "gt"):
        assert item[key].shape == (3, 256, 256) and item[key].dtype == torch.float32
        assert item[key].min() >= -1 and item[key].max() <= 1
    levels = (item["lq"] * 0.5 + 0.5) * 255
    assert (levels - levels.round()).abs().max() < 1e-4  # LQ is rounded to 8 bits
    assert item["path"] == str(dataset.paths[0])
    assert item["loc_mouth"].shape == (4,) and item["loc_mouth"].dtype == torch.float32
    small = FaceDataset(face_folder, size=128)[1]
    assert small["lq"].shape == small["gt"].shape == (3, 128, 128) and "loc_mouth" not in small


def test_gt_is_the_file_and_flip_swaps_eye_boxes(face_folder, box_file):
    plain = FaceDataset(face_folder, flip=False, degradation=NO_GRAY, component_boxes=box_file)
    flipping = FaceDataset(face_folder, flip=True, degradation=NO_GRAY, component_boxes=box_file)
    # hand-computed from BOXES_512 at 256 (factor 0.5), eyes enlarged 1.4, x -> 256 - x when flipped
    unflipped = {"loc_left_eye": [100 - 14 + 1, 120 - 14 + 1, 114, 134],
                 "loc_right_eye": [160 - 16.8 + 1, 122 - 16.8 + 1, 176.8, 138.8],
                 "loc_mouth": [128 - 20 + 1, 185 - 20 + 1, 148, 205]}
    flipped = {"loc_left_eye": [96 - 16.8 + 1, 122 - 16.8 + 1, 112.8, 138.8],
               "loc_right_eye": [156 - 14 + 1, 120 - 14 + 1, 170, 134],
               "loc_mouth": [128 - 20 + 1, 185 - 20 + 1, 148, 205]}
    seen = set()
    for index in range(NUM_FACES):
        original = read_float_image(plain.paths[index])
        assert np.allclose(to_unit(plain[index]["gt"]), original, atol=1e-6)
        item = flipping[index]
        was_flipped = np.allclose(to_unit(item["gt"]), original[:, ::-1], atol=1e-6)
        assert was_flipped or np.allclose(to_unit(item["gt"]), original, atol=1e-6)
        expected = flipped if was_flipped else unflipped
        for key, values in expected.items():
            assert torch.allclose(item[key], torch.tensor(values, dtype=torch.float32), atol=1e-4), (index, key, item[key])
        seen.add(was_flipped)
    assert seen == {True, False}


def test_component_locations_by_hand():
    locations = component_locations(BOXES_512, 512, 512, flipped=True, eye_enlarge_ratio=1.0)
    # official: swap the eyes, x -> out_size - x, then (c - h + 1, c + h)
    assert locations["loc_left_eye"].tolist() == [192 - 24 + 1, 244 - 24 + 1, 192 + 24, 244 + 24]
    assert locations["loc_right_eye"].tolist() == [312 - 20 + 1, 240 - 20 + 1, 312 + 20, 240 + 20]
    assert locations["loc_mouth"].tolist() == [256 - 40 + 1, 370 - 40 + 1, 256 + 40, 370 + 40]


def test_worker_count_and_access_order_do_not_change_samples(face_folder):
    dataset = FaceDataset(face_folder, size=64, seed=5)
    batches = {}
    for workers in (0, 2):
        loader = DataLoader(dataset, batch_size=2, shuffle=False, num_workers=workers)
        batches[workers] = list(loader)
    for a, b in zip(batches[0], batches[2]):
        assert torch.equal(a["lq"], b["lq"]) and torch.equal(a["gt"], b["gt"]) and a["path"] == b["path"]
    # random access in another order (as a shuffling / distributed sampler does) gives the same items
    sampler = DistributedSampler(dataset, num_replicas=2, rank=1, shuffle=True, seed=0)
    for index in list(sampler):
        assert torch.equal(dataset[index]["lq"], batches[0][index // 2]["lq"][index % 2])
    # another epoch or seed draws other degradations
    dataset.set_epoch(1)
    assert not torch.equal(dataset[0]["lq"], batches[0][0]["lq"][0])
    assert not torch.equal(FaceDataset(face_folder, size=64, seed=6)[0]["lq"], batches[0][0]["lq"][0])


def test_dataset_errors(tmp_path, face_folder):
    with pytest.raises(DatasetError, match="no images"):
        FaceDataset(tmp_path)
    with pytest.raises(DatasetError, match="not a folder"):
        FaceDataset(tmp_path / "missing")
    partial = ComponentBoxFile(frame_size=512, boxes={"nothing.jpg": BOXES_512}, source="boxes.json")
    with pytest.raises(DatasetError, match=rf"^boxes\.json: no component boxes for {NUM_FACES} of {NUM_FACES} images"):
        FaceDataset(face_folder, component_boxes=partial)
    with pytest.raises(DatasetError, match="size must be a positive integer"):
        FaceDataset(face_folder, size=0)


def _official_style_file(path, numpy_1_names: bool) -> None:
    """Write a component file like FFHQ_eye_mouth_landmarks_512.pth (lists of np.float64),
    optionally with the numpy 1.x module names that the 2021 file was pickled with."""
    data = {f"{i:08d}": {"left_eye": [np.float64(190.5 + i), np.float64(241.0), np.float64(16.0)],
                         "right_eye": [np.float64(318.0), np.float64(240.0), np.float64(17.5)],
                         "mouth": np.array([256.0, 372.0, 33.0])} for i in range(40)}
    buffer = io.BytesIO()
    torch.save(data, buffer)
    if not numpy_1_names:
        path.write_bytes(buffer.getvalue())
        return
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename.endswith("data.pkl"):
                content = content.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            target.writestr(info, content)


@pytest.mark.parametrize("numpy_1_names", [False, True])
def test_load_official_component_file(tmp_path, face_folder, numpy_1_names):
    path = tmp_path / "FFHQ_eye_mouth_landmarks_512.pth"
    _official_style_file(path, numpy_1_names)
    boxes = load_official_component_file(path)
    assert boxes.frame_size == 512 and len(boxes.boxes) == 40
    assert boxes.boxes["00000003"] == ComponentBoxes((193.5, 241.0, 16.0), (318.0, 240.0, 17.5), (256.0, 372.0, 33.0))
    # numeric file names find the official 8-digit keys
    assert boxes.lookup("00007.png") == boxes.boxes["00000007"] and boxes.lookup("face.png") is None
    dataset = FaceDataset(face_folder, flip=False, component_boxes=path)  # files 00000.jpg ... exist there
    item = dataset[0]
    key = f"{int(dataset.paths[0].stem):08d}"
    x, y, half = boxes.boxes[key].left_eye
    expected = torch.tensor([x / 2 - 1.4 * half / 2 + 1, y / 2 - 1.4 * half / 2 + 1, x / 2 + 1.4 * half / 2,
                             y / 2 + 1.4 * half / 2])
    assert torch.allclose(item["loc_left_eye"], expected, atol=1e-4)


def test_bad_component_files(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"00000000": {"left_eye": [1.0, 2.0]}}, bad)
    with pytest.raises(DatasetError, match=r"bad\.pth: 00000000: expected a dict with keys"):
        load_official_component_file(bad)
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"00000000": {"left_eye": [1.0, 2.0, 3.0], "right_eye": [1.0, 2.0, 3.0], "mouth": [1.0, 2.0, 3.0],
                             "extra": ComponentBoxes((0, 0, 1), (0, 0, 1), (0, 0, 1))}}, unsafe)
    with pytest.raises(DatasetError, match=r"unsafe\.pth: cannot read component file"):
        load_official_component_file(unsafe)
    (tmp_path / "other.json").write_text(json.dumps({"format": "something"}))
    with pytest.raises(DatasetError, match="not a faceprior.component_boxes file"):
        load_component_boxes(tmp_path / "other.json")


def test_boxes_from_landmarks_by_hand():
    landmarks = np.array([[100.0, 120.0], [200.0, 120.0], [150.0, 160.0], [110.0, 200.0], [190.0, 204.0]])
    boxes = boxes_from_landmarks(landmarks, frame_size=256)
    assert boxes.left_eye == (100.0, 120.0, 23.0) and boxes.right_eye == (200.0, 120.0, 23.0)
    assert boxes.mouth == (150.0, 202.0, np.hypot(80.0, 4.0) / 2)
    tiny = boxes_from_landmarks(landmarks * 0.1, frame_size=256)
    assert tiny.left_eye[2] == tiny.mouth[2] == 8.0  # at least 16 / 512 of the frame


def test_compute_component_boxes_with_a_callable_detector(tmp_path, face_folder):
    calls = []

    def fake_detector(image):
        calls.append((image.dtype, image.shape))
        if len(calls) == 2:
            return None  # "no face" in the second image
        return np.array([[40.0, 40.0], [88.0, 40.0], [64.0, 64.0], [44.0, 90.0], [84.0, 90.0]])

    out = tmp_path / "boxes.json"
    result = compute_component_boxes(face_folder, fake_detector, out, size=128)
    assert calls[0] == (np.uint8, (128, 128, 3)) and len(calls) == NUM_FACES
    names = sorted(p.name for p in face_folder.iterdir())
    assert result.missing == (names[1],) and sorted(result.boxes) == names[:1] + names[2:]
    loaded = load_component_boxes(out)
    assert loaded.frame_size == 128 and loaded.boxes == result.boxes and loaded.missing == result.missing
    assert loaded.boxes[names[0]].left_eye == (40.0, 40.0, 0.23 * 48)
    calls.clear()
    with pytest.raises(DatasetError, match="exists"):
        compute_component_boxes(face_folder, fake_detector, out, size=128)
    assert calls == []  # refused before any detection
    # A new folder for the output file is created.
    nested = compute_component_boxes(face_folder, lambda image: None, tmp_path / "new" / "deeper" / "boxes.json")
    assert (tmp_path / "new" / "deeper" / "boxes.json").is_file() and len(nested.missing) == NUM_FACES
    # The image without a face is left out of training, with a warning; the others keep their boxes.
    with pytest.warns(UserWarning, match=rf"1 of {NUM_FACES} images .* no detected face and are left out"):
        dataset = FaceDataset(face_folder, component_boxes=out)
    assert len(dataset) == NUM_FACES - 1 and names[1] not in {Path(dataset[i]["path"]).name for i in range(len(dataset))}
    assert "loc_left_eye" in dataset[0]
    # An image that the file neither boxes nor lists as faceless is an error (a stale box file).
    stale = ComponentBoxFile(frame_size=128, boxes={k: v for k, v in result.boxes.items() if k != names[2]},
                             missing=result.missing, source="stale.json")
    with pytest.raises(DatasetError, match=rf"^stale\.json: no component boxes for 1 of {NUM_FACES - 1} images .*first: {names[2]}"), \
            pytest.warns(UserWarning, match="left out"):
        FaceDataset(face_folder, component_boxes=stale)

"""Safe checkpoint reading (torch weights_only / own safetensors reader) and atomic writing."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
from pathlib import Path

import pytest
import torch

from faceprior.weights.checkpoint import (
    CheckpointError,
    atomic_write,
    read_checkpoint,
    read_state_dict,
    read_state_dict_and_key,
    save_state_dict,
)
from faceprior.weights.safetensors import load_safetensors, read_safetensors_header, save_safetensors


def _assert_one_line_error(error: pytest.ExceptionInfo, path: Path, *fragments: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message


def _all_dtypes() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "f32": torch.randn(3, 4, generator=generator),
        "f64": torch.randn(5, generator=generator, dtype=torch.float64),
        "f16": torch.randn(2, 3, generator=generator).half(),
        "bf16": torch.randn(7, generator=generator).bfloat16(),
        "i64": torch.tensor([-(2**40), 3, 5]),
        "i32": torch.tensor([[1, -2], [3, 4]], dtype=torch.int32),
        "i16": torch.tensor([-300], dtype=torch.int16),
        "i8": torch.tensor([-7, 7, 0], dtype=torch.int8),
        "u8": torch.tensor([0, 255, 128], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
    }


def _torch_save(obj: object, path: Path) -> Path:
    torch.save(obj, path)
    return path


# ----------------------------------------------------------------------------------------------
# Reading the reference checkpoints


def test_reference_checkpoints_unwrap_like_the_official_loader(reference_dir: Path):
    index = json.loads((reference_dir / "index.json").read_text())
    for config in index["configs"].values():
        path = reference_dir / config["ckpt"]
        raw = torch.load(path, map_location="cpu", weights_only=True)
        state_dict, key = read_state_dict_and_key(path)
        assert key == config["ckpt_key"]
        assert list(state_dict) == list(raw[key])
        assert all(torch.equal(state_dict[k], raw[key][k]) for k in state_dict)
        assert len(state_dict) == config["num_state_dict_entries"]


def test_fp16_arcface_checkpoint_keeps_its_dtypes(reference_dir: Path):
    path = reference_dir / "arcface" / "ckpt" / "ResNetArcFace_fp16.pth"
    if not path.is_file():
        pytest.skip("ArcFace companion not present")
    state_dict = read_state_dict(path)
    assert state_dict["conv1.weight"].dtype == torch.float16
    assert state_dict["bn1.num_batches_tracked"].dtype == torch.int64


# ----------------------------------------------------------------------------------------------
# Choosing the state dict inside the file


def test_params_ema_is_preferred_then_params_then_bare(tmp_path: Path):
    ema, plain = {"w": torch.ones(2)}, {"w": torch.zeros(2)}
    both = _torch_save({"params": plain, "params_ema": ema}, tmp_path / "both.pth")
    assert torch.equal(read_state_dict(both)["w"], ema["w"])
    assert read_state_dict_and_key(both)[1] == "params_ema"
    assert torch.equal(read_state_dict(both, key="params")["w"], plain["w"])
    only_params = _torch_save({"params": plain}, tmp_path / "params.pth")
    assert torch.equal(read_state_dict(only_params)["w"], plain["w"])
    bare = _torch_save({"w": torch.full((2,), 3.0)}, tmp_path / "bare.pth")
    state_dict, key = read_state_dict_and_key(bare)
    assert key is None and torch.equal(state_dict["w"], torch.full((2,), 3.0))


def test_module_prefix_is_stripped_and_non_tensors_dropped(tmp_path: Path):
    path = _torch_save({"module.conv.weight": torch.ones(1), "module.conv.bias": torch.zeros(1), "epoch": 3}, tmp_path / "dp.pth")
    assert list(read_state_dict(path)) == ["conv.weight", "conv.bias"]


def test_missing_key_lists_available_ones(tmp_path: Path):
    path = _torch_save({"params": {"w": torch.ones(1)}, "optimizer": {}}, tmp_path / "c.pth")
    with pytest.raises(CheckpointError) as error:
        read_state_dict(path, key="params_ema")
    _assert_one_line_error(error, path, "'params_ema'", "params, optimizer")


def test_file_without_tensors_is_an_error(tmp_path: Path):
    path = _torch_save({"epoch": 3, "name": "x"}, tmp_path / "meta.pth")
    with pytest.raises(CheckpointError) as error:
        read_state_dict(path)
    _assert_one_line_error(error, path, "no tensors", "epoch")
    listing = _torch_save([torch.ones(1)], tmp_path / "list.pth")
    with pytest.raises(CheckpointError) as error:
        read_state_dict(listing)
    _assert_one_line_error(error, listing, "found a list")


# ----------------------------------------------------------------------------------------------
# Bad PyTorch files


def test_missing_empty_and_directory(tmp_path: Path):
    with pytest.raises(CheckpointError) as error:
        read_state_dict(tmp_path / "nope.pth")
    _assert_one_line_error(error, tmp_path / "nope.pth", "no such file")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError) as error:
        read_state_dict(empty)
    _assert_one_line_error(error, empty, "empty file")
    with pytest.raises(CheckpointError) as error:
        read_state_dict(tmp_path)
    _assert_one_line_error(error, tmp_path, "directory")


@pytest.fixture
def good_pth(tmp_path: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save({"params_ema": {f"layer{i}.weight": torch.randn(64, 64) for i in range(4)}}, buffer)
    return buffer.getvalue()


def test_truncated_zip_checkpoint(tmp_path: Path, good_pth: bytes):
    for cut in (len(good_pth) // 2, len(good_pth) - 20):
        path = tmp_path / f"cut{cut}.pth"
        path.write_bytes(good_pth[:cut])
        with pytest.raises(CheckpointError) as error:
            read_state_dict(path)
        _assert_one_line_error(error, path, "truncated or corrupted")


def test_corrupted_zip_checkpoint(tmp_path: Path, good_pth: bytes):
    # Overwrite the zip's central directory region (near the end) with garbage.
    data = bytearray(good_pth)
    data[-300:-200] = bytes(range(100))
    path = tmp_path / "corrupt.pth"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as error:
        read_state_dict(path)
    _assert_one_line_error(error, path, "corrupted")


def test_truncated_legacy_checkpoint(tmp_path: Path):
    buffer = io.BytesIO()
    torch.save({"params": {"w": torch.randn(100)}}, buffer, _use_new_zipfile_serialization=False)
    data = buffer.getvalue()
    assert read_state_dict_and_key(_write(tmp_path / "legacy.pth", data))[1] == "params"  # the format itself is fine
    for cut in (len(data) - 5, len(data) // 2):
        path = _write(tmp_path / f"legacy{cut}.pth", data[:cut])
        with pytest.raises(CheckpointError) as error:
            read_state_dict(path)
        _assert_one_line_error(error, path, "truncated")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


class _WritesMarker:
    """Unpickling this would call os.system and create a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_never_executed(tmp_path: Path):
    marker = tmp_path / "MARKER"
    zip_path = _torch_save({"params_ema": {"w": torch.ones(1)}, "payload": _WritesMarker(marker)}, tmp_path / "evil.pth")
    raw_path = _write(tmp_path / "evil_raw.pth", pickle.dumps({"params": _WritesMarker(marker)}, protocol=2))
    framed_path = _write(tmp_path / "evil_framed.pt", pickle.dumps({"params": _WritesMarker(marker)}, protocol=4))
    for path in (zip_path, raw_path):
        with pytest.raises(CheckpointError) as error:
            read_state_dict(path)
        _assert_one_line_error(error, path, "refusing to load", "Python objects other than tensors", "system")
    with pytest.raises(CheckpointError) as error:
        read_state_dict(framed_path)
    _assert_one_line_error(error, framed_path, "refusing to load")
    assert not marker.exists()


def test_non_checkpoint_files(tmp_path: Path):
    text = _write(tmp_path / "notes.pth", b"these are not weights\n")
    png = _write(tmp_path / "image.pth", b"\x89PNG\r\n\x1a\n" + bytes(100))
    for path in (text, png):
        with pytest.raises(CheckpointError) as error:
            read_state_dict(path)
        _assert_one_line_error(error, path, "not a PyTorch or safetensors checkpoint")
    plain_pickle = _write(tmp_path / "plain.pkl", pickle.dumps({"w": [1.0, 2.0]}, protocol=2))
    with pytest.raises(CheckpointError) as error:
        read_state_dict(plain_pickle)
    _assert_one_line_error(error, plain_pickle, "not a PyTorch checkpoint")


# ----------------------------------------------------------------------------------------------
# safetensors


def test_safetensors_round_trip_all_dtypes(tmp_path: Path):
    tensors = _all_dtypes()
    path = tmp_path / "all.safetensors"
    save_safetensors(tensors, path, metadata={"note": "hello"})
    loaded = load_safetensors(path)
    assert sorted(loaded) == sorted(tensors)
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype and loaded[name].shape == tensor.shape
        assert torch.equal(loaded[name], tensor), name
    entries, metadata = read_safetensors_header(path)
    assert metadata == {"note": "hello"}
    # Layout: 8-byte aligned data start, every tensor aligned to its element size.
    (header_len,) = struct.unpack("<Q", path.read_bytes()[:8])
    assert header_len % 8 == 0
    for name, info in entries.items():
        assert info["data_offsets"][0] % tensors[name].element_size() == 0


def test_safetensors_matches_the_reference_implementation(tmp_path: Path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    tensors = _all_dtypes()
    ours, theirs = tmp_path / "ours.safetensors", tmp_path / "theirs.safetensors"
    save_safetensors(tensors, ours, metadata={"k": "v"})
    safetensors_torch.save_file(tensors, theirs, metadata={"k": "v"})
    read_by_them = safetensors_torch.load_file(ours)
    read_by_us = load_safetensors(theirs)
    for name, tensor in tensors.items():
        assert torch.equal(read_by_them[name], tensor) and read_by_them[name].dtype == tensor.dtype
        assert torch.equal(read_by_us[name], tensor) and read_by_us[name].dtype == tensor.dtype
    assert read_safetensors_header(theirs)[1] == {"k": "v"}


def _safetensors_bytes(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("truncated", "file not fully covered"),
        ("huge_header_length", "implausible"),
        ("header_past_end", "truncated"),
        ("bad_json", "invalid JSON"),
        ("bad_dtype", "F8_E4M3X"),
        ("size_mismatch", "invalid shape, data type, or offset"),
        ("overlap", "invalid offset"),
        ("gap", "invalid offset"),
        ("trailing_bytes", "file not fully covered"),
        ("negative_shape", "integer `-4`"),
        # what a hostile tester sent (../shared/findings/trust-repros.md, 11): each once a traceback
        ("dtype_object", "invalid JSON"),
        ("nested_200000_deep", "invalid"),
        ("overflowing_shape", "overflow"),
        ("shape_past_int64", "expected usize"),
        ("integer_of_5000_digits", "number out of range"),
    ],
)
def test_bad_safetensors_files(tmp_path: Path, case: str, fragment: str):
    four_floats = bytes(16)
    good = {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}
    files = {
        "truncated": _safetensors_bytes(good, four_floats[:10]),
        "huge_header_length": struct.pack("<Q", 2**62) + b"{}",
        "header_past_end": struct.pack("<Q", 500) + b'{"a": 1}',
        "bad_json": struct.pack("<Q", 5) + b"{oops" + four_floats,
        "bad_dtype": _safetensors_bytes({"a": {"dtype": "F8_E4M3X", "shape": [16], "data_offsets": [0, 16]}}, four_floats),
        "size_mismatch": _safetensors_bytes({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}}, four_floats[:12]),
        "overlap": _safetensors_bytes(
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            },
            four_floats[:12],
        ),
        "gap": _safetensors_bytes({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, four_floats),
        "trailing_bytes": _safetensors_bytes(good, four_floats + b"xxxx"),
        "negative_shape": _safetensors_bytes({"a": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}, four_floats),
        "dtype_object": _safetensors_bytes({"a": {"dtype": {"x": 1}, "shape": [4], "data_offsets": [0, 16]}}, four_floats),
        "nested_200000_deep": (lambda raw: struct.pack("<Q", len(raw)) + raw)(b'{"a": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"),
        "overflowing_shape": _safetensors_bytes({"a": {"dtype": "F32", "shape": [2**62, 2**62, 0], "data_offsets": [0, 0]}}, b""),
        "shape_past_int64": _safetensors_bytes({"a": {"dtype": "F32", "shape": [0, 2**70], "data_offsets": [0, 0]}}, b""),
        "integer_of_5000_digits": (lambda raw: struct.pack("<Q", len(raw)) + raw + four_floats)(
            b'{"a": {"dtype": "F32", "shape": [' + b"9" * 5000 + b'], "data_offsets": [0, 16]}}'),
    }
    path = _write(tmp_path / f"{case}.safetensors", files[case])
    with pytest.raises(CheckpointError) as error:
        read_state_dict(path)
    _assert_one_line_error(error, path, fragment)


def test_zero_byte_safetensors(tmp_path: Path):
    path = _write(tmp_path / "zero.safetensors", b"")
    with pytest.raises(CheckpointError) as error:
        read_state_dict(path)
    _assert_one_line_error(error, path, "empty file")


def test_format_is_sniffed_not_taken_from_the_suffix(tmp_path: Path):
    tensors = {"w": torch.arange(4.0)}
    misnamed = tmp_path / "actually_safetensors.pth"
    save_safetensors(tensors, tmp_path / "x.safetensors")
    misnamed.write_bytes((tmp_path / "x.safetensors").read_bytes())
    assert torch.equal(read_state_dict(misnamed)["w"], tensors["w"])
    zip_named_safetensors = _write(tmp_path / "actually_zip.safetensors", (_torch_save({"params": tensors}, tmp_path / "z.pth")).read_bytes())
    assert torch.equal(read_state_dict(zip_named_safetensors)["w"], tensors["w"])


# ----------------------------------------------------------------------------------------------
# Writing


def test_save_state_dict_round_trips_with_its_wrapper_key(tmp_path: Path):
    state_dict = {"a.weight": torch.randn(3, 3), "a.bias": torch.randn(3), "bn.num_batches_tracked": torch.tensor(7)}
    for name in ("w.pth", "w.safetensors"):
        save_state_dict(state_dict, tmp_path / name, key="params")
        loaded, key = read_state_dict_and_key(tmp_path / name)
        assert key == "params"
        assert sorted(loaded) == sorted(state_dict)  # safetensors files list their tensors by name
        assert all(torch.equal(loaded[k], state_dict[k]) and loaded[k].dtype == state_dict[k].dtype for k in state_dict)
    assert set(torch.load(tmp_path / "w.pth", weights_only=True)) == {"params"}
    save_state_dict(state_dict, tmp_path / "bare.pth", key=None)
    assert set(read_checkpoint(tmp_path / "bare.pth")) == set(state_dict)


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path: Path):
    target = _write(tmp_path / "weights.pth", b"old content")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write(b"half of the new")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.pth"]  # no temporary left behind


def test_save_safetensors_rejects_what_it_cannot_store(tmp_path: Path):
    with pytest.raises(TypeError):
        save_safetensors({"a": [1, 2]}, tmp_path / "x.safetensors")  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        save_safetensors({"c": torch.zeros(2, dtype=torch.complex64)}, tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_zip_bomb_is_refused_before_anything_is_inflated(tmp_path: Path, monkeypatch):
    """A small .pth whose zip members declare far more data than the file holds (trust-repros 7: a
    4 MB file inflated to 4.3 GB in memory) is refused from the zip directory alone."""
    import zipfile

    bomb = tmp_path / "bomb.pth"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        with archive.open("archive/data/0", "w", force_zip64=True) as member:
            chunk = bytes(2**20)
            for _ in range(64):  # 64 MiB of zeros, about 64 KB compressed
                member.write(chunk)
    assert bomb.stat().st_size < 2**20

    def never(*args, **kwargs):
        raise AssertionError("torch.load must not run on a compression bomb")

    monkeypatch.setattr(torch, "load", never)
    with pytest.raises(CheckpointError) as error:
        read_state_dict(bomb)
    _assert_one_line_error(error, bomb, "refusing to load", "compression bomb")

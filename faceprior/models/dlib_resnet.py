"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) in PyTorch.

The network of dlib's ``dnn_face_recognition_ex.cpp`` (29 conv layers, 128-d descriptor), so
that its descriptor can serve as a differentiable identity loss where ArcFace weights are not
at hand (training), and equals ``dlib.face_recognition_model_v1.compute_face_descriptor`` on
the same 150x150 chip to float tolerance (tests/test_dlib_resnet.py).

Layers, input to output (dlib's conventions, which differ from torchvision's ResNet):
    150x150 RGB -> conv 7x7 stride 2 (no padding) -> affine -> ReLU -> max-pool 3x3 stride 2
    (no padding) -> 3 blocks of 32 -> 4 of 64 -> 3 of 128 -> 3 of 256 -> 1 of 256 -> mean over
    space -> linear 256 -> 128 without bias.
    A block is conv 3x3 -> affine -> ReLU -> conv 3x3 -> affine, added to its input, ReLU. The
    first block of each width below 32 ("down") strides its first conv by 2 with no padding and
    adds a 2x2 average pool of its input; where the two differ in channels or size, dlib adds
    them with zeros for the missing part (top-left aligned).
    "affine" is dlib's frozen batch norm: ``gamma * x + beta`` per channel.

The ``.dat`` file is dlib's own binary serialisation (no pickle): it is read here by locating
each layer's record (``con_4``, ``affine_``, ``fc_2``) and its parameter tensor (dlib tensor
version 2: four varint dimensions, then little-endian float32 values).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DLIB_CHIP_SIZE", "DLIB_MEAN_RGB", "DlibFaceResNet", "load_dlib_face_resnet", "read_dlib_resnet_parameters"]

DLIB_CHIP_SIZE = 150
# input_rgb_image_sized: (pixel - mean) / 256 per channel, pixels in [0, 255]
DLIB_MEAN_RGB = (122.782, 117.001, 104.298)
# (width, down-sampling first block?) of the 14 residual blocks, input to output
_BLOCKS = [(32, False)] * 3 + [(64, True)] + [(64, False)] * 3 + [(128, True)] + [(128, False)] * 2 \
    + [(256, True)] + [(256, False)] * 2 + [(256, True)]


class _Affine(nn.Module):
    """dlib ``affine_`` layer: per-channel ``gamma * x + beta`` (buffers: frozen)."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("gamma", torch.ones(channels))
        self.register_buffer("beta", torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1)


def _add_zero_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib ``add_prev``: sum of two [B, C, H, W] tensors of possibly different C, H, W; the
    result has the larger of each, the smaller tensor counted as zero outside its extent."""
    if a.shape == b.shape:
        return a + b
    channels, height, width = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, width - t.shape[3], 0, height - t.shape[2], 0, channels - t.shape[1]))

    return pad(a) + pad(b)


class _Block(nn.Module):
    def __init__(self, in_channels: int, channels: int, down: bool):
        super().__init__()
        self.down = down
        stride, padding = (2, 0) if down else (1, 1)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, padding)
        self.affine1 = _Affine(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.affine2 = _Affine(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        skip = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(_add_zero_padded(out, skip))


class DlibFaceResNet(nn.Module):
    """dlib's face-recognition ResNet: [B, 3, 150, 150] chip -> [B, 128] descriptor.

    Input: RGB in dlib's input scaling, ``(pixel - DLIB_MEAN_RGB) / 256`` with pixels in [0, 255];
    :meth:`descriptor_from_unit_range` takes [-1, 1] images instead. Two faces whose descriptors
    are less than 0.6 apart (Euclidean) are the same person by dlib's convention.
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 7, 2, 0)
        self.affine1 = _Affine(32)
        blocks, in_channels = [], 32
        for channels, down in _BLOCKS:
            blocks.append(_Block(in_channels, channels, down))
            in_channels = channels
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(256, 128, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.affine1(self.conv1(x))), 3, 2)
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))

    def descriptor_from_unit_range(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, 150, 150] RGB in [-1, 1] -> [B, 128] descriptor (differentiable)."""
        mean = torch.tensor(DLIB_MEAN_RGB, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
        return self(((images + 1) * 127.5 - mean) / 256)


# ----------------------------------------------------------------------------------------------
# reading dlib's serialisation


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """dlib ``pack_int``: a header byte (bit 7: negative, low 4 bits: byte count), then that many
    little-endian bytes. Returns (value, next position)."""
    header = data[pos]
    size = header & 0x0F
    if size > 8:
        raise ValueError(f"bad integer header 0x{header:02x} at byte {pos}")
    value = int.from_bytes(data[pos + 1 : pos + 1 + size], "little")
    return (-value if header & 0x80 else value), pos + 1 + size


def _read_tensor(data: bytes, pos: int, source: str) -> tuple[np.ndarray, int]:
    """dlib tensor (version 2): varints version, num_samples, k, nr, nc, then float32 LE values."""
    version, pos = _read_varint(data, pos)
    if version != 2:
        raise ValueError(f"{source}: unsupported dlib tensor version {version} at byte {pos}")
    dims = []
    for _ in range(4):
        value, pos = _read_varint(data, pos)
        dims.append(value)
    count = int(np.prod(dims))
    end = pos + 4 * count
    if end > len(data):
        raise ValueError(f"{source}: truncated tensor of {count} values at byte {pos}")
    return np.frombuffer(data, dtype="<f4", count=count, offset=pos).reshape(dims), end


def _record_positions(data: bytes, name: bytes) -> list[int]:
    """Byte positions just after each serialised string ``name`` (varint length + bytes)."""
    marker = bytes([0x01, len(name)]) + name
    positions, start = [], 0
    while (found := data.find(marker, start)) >= 0:
        positions.append(found + len(marker))
        start = found + 1
    return positions


def read_dlib_resnet_parameters(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict of :class:`DlibFaceResNet` from ``dlib_face_recognition_resnet_model_v1.dat``.

    Raises ValueError naming the file when it is not that network (wrong layer count or shape).
    """
    path = Path(path)
    source = str(path)
    data = path.read_bytes()
    if b"loss_metric_" not in data[:32]:
        raise ValueError(f"{source}: not a dlib metric-learning network (no loss_metric header)")
    model = DlibFaceResNet()
    convs = [model.conv1] + [conv for block in model.blocks for conv in (block.conv1, block.conv2)]
    affines = [model.affine1] + [aff for block in model.blocks for aff in (block.affine1, block.affine2)]
    names = {module: name for name, module in model.named_modules()}
    conv_positions, affine_positions = _record_positions(data, b"con_4"), _record_positions(data, b"affine_")
    fc_positions = _record_positions(data, b"fc_2")
    if (len(conv_positions), len(affine_positions), len(fc_positions)) != (len(convs), len(affines), 1):
        raise ValueError(f"{source}: expected {len(convs)} con_4, {len(affines)} affine_ and 1 fc_2 records, found "
                         f"{len(conv_positions)}, {len(affine_positions)}, {len(fc_positions)}")
    state: dict[str, torch.Tensor] = {}
    # records appear in forward order (dlib serialises the innermost layer first)
    for conv, pos in zip(convs, conv_positions):
        values, _ = _read_tensor(data, pos, source)
        weight_count = conv.weight.numel()
        if values.size != weight_count + conv.out_channels:
            raise ValueError(f"{source}: conv {names[conv]} has {values.size} values, expected {weight_count + conv.out_channels}")
        flat = torch.from_numpy(values.reshape(-1).copy())
        state[f"{names[conv]}.weight"] = flat[:weight_count].view_as(conv.weight)
        state[f"{names[conv]}.bias"] = flat[weight_count:]
    for affine, pos in zip(affines, affine_positions):
        values, _ = _read_tensor(data, pos, source)
        channels = affine.gamma.numel()
        if values.size != 2 * channels:
            raise ValueError(f"{source}: affine {names[affine]} has {values.size} values, expected {2 * channels}")
        flat = torch.from_numpy(values.reshape(-1).copy())
        state[f"{names[affine]}.gamma"], state[f"{names[affine]}.beta"] = flat[:channels], flat[channels:]
    pos = fc_positions[0]
    num_outputs, pos = _read_varint(data, pos)
    num_inputs, pos = _read_varint(data, pos)
    values, _ = _read_tensor(data, pos, source)
    if (num_inputs, num_outputs) != (256, 128) or values.size != 256 * 128:
        raise ValueError(f"{source}: fc layer is {num_inputs} -> {num_outputs}, expected 256 -> 128")
    state["fc.weight"] = torch.from_numpy(values.reshape(256, 128).T.copy())
    return state


def load_dlib_face_resnet(path: str | os.PathLike) -> DlibFaceResNet:
    """:class:`DlibFaceResNet` with the weights of a ``.dat`` file (dlib's) or of a ``.safetensors``
    state dict (read as float32), in eval mode, parameters frozen."""
    model = DlibFaceResNet()
    if str(path).endswith(".safetensors"):
        from faceprior.weights.safetensors import load_safetensors

        state = {name: tensor.float() for name, tensor in load_safetensors(path).items()}
    else:
        state = read_dlib_resnet_parameters(path)
    model.load_state_dict(state, strict=True)
    for param in model.parameters():
        param.requires_grad_(False)
    return model.eval()

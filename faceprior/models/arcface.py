"""ArcFace identity network used by GFP-GAN's identity-preserving loss.

``ResNetArcFace`` is the ResNet-18-like face recogniser of the official GFP-GAN training setup
(gfpgan ``arcface_arch``; released weights ``arcface_resnet18.pth``). It maps a grayscale face crop to a
512-d identity embedding. Module names, parameter shapes and state-dict order follow the official
code, so its checkpoints (``{'params': state_dict}``) load with ``strict=True``.

Input convention: ``[B, 1, 128, 128]`` grayscale in ``[-1, 1]``. GFP-GAN's training builds it from an
RGB face in ``[-1, 1]`` as ``0.2989 * R + 0.5870 * G + 0.1140 * B``, then resizes it to 128x128
(bilinear, ``align_corners=False``). The spatial size is fixed by ``fc5`` (``512 * 8 * 8`` inputs).
"""

from __future__ import annotations

from typing import Optional, Sequence, Type, Union

import torch
import torch.nn.functional as F
from torch import nn

from faceprior.models.architecture import Architecture, Shapes, indices


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class SEBlock(nn.Module):
    """Squeeze-and-excitation: scales each channel by a gate in (0, 1) computed from its global mean.

    [B, C, H, W] -> [B, C, H, W].
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction),
            nn.PReLU(),
            nn.Linear(channels // reduction, channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        gate = self.fc(self.avg_pool(x).view(b, c)).view(b, c, 1, 1)
        return x * gate


def _check_no_se(block_name: str, use_se: bool) -> None:
    if use_se:
        raise ValueError(f"{block_name} has no squeeze-and-excitation variant; use IRBlock or use_se=False")


class BasicBlock(nn.Module):
    """ResNet basic block: conv3x3-BN-ReLU-conv3x3-BN, plus the (projected) input, then ReLU."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None, use_se: bool = False):
        super().__init__()
        _check_no_se("BasicBlock", use_se)
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class IRBlock(nn.Module):
    """Improved residual block of ArcFace (pre-BN, PReLU, optional SE).

    ``BN - conv3x3 - BN - PReLU - conv3x3(stride) - BN [- SE]``, plus the (projected) input, then the same
    PReLU again (one shared slope parameter, as in the official code).
    """

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None, use_se: bool = True):
        super().__init__()
        self.bn0 = nn.BatchNorm2d(in_channels)
        self.conv1 = conv3x3(in_channels, in_channels)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.prelu = nn.PReLU()
        self.conv2 = conv3x3(in_channels, channels, stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = downsample
        self.stride = stride
        self.use_se = use_se
        if use_se:
            self.se = SEBlock(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.prelu(self.bn1(self.conv1(self.bn0(x))))
        out = self.bn2(self.conv2(out))
        if self.use_se:
            out = self.se(out)
        return self.prelu(out + residual)


class Bottleneck(nn.Module):
    """ResNet bottleneck: conv1x1-BN-ReLU-conv3x3(stride)-BN-ReLU-conv1x1(x4)-BN, plus input, ReLU."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None, use_se: bool = False):
        super().__init__()
        _check_no_se("Bottleneck", use_se)
        self.conv1 = nn.Conv2d(in_channels, channels, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, channels * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


Block = Union[Type[BasicBlock], Type[IRBlock], Type[Bottleneck]]
BLOCKS_BY_NAME = {"BasicBlock": BasicBlock, "IRBlock": IRBlock, "Bottleneck": Bottleneck}


class ResNetArcFace(nn.Module):
    """ArcFace ResNet: grayscale face [B, 1, 128, 128] in [-1, 1] -> identity embedding [B, 512].

    The embedding is the output of the final BatchNorm1d (not L2-normalised); GFP-GAN's identity loss
    compares embeddings of the restored and ground-truth faces with an L1 loss. Use the model in eval
    mode for embeddings (BatchNorm running statistics, no dropout).

    Args:
        block: residual block class or its name ('IRBlock', 'BasicBlock' or 'Bottleneck').
        layers: number of blocks in each of the four stages (64, 128, 256 and 512 channels).
        use_se: add squeeze-and-excitation to each IRBlock. The defaults are the configuration
            used by GFP-GAN (``IRBlock``, ``[2, 2, 2, 2]``, no SE).
    """

    def __init__(self, block: Union[str, Block] = "IRBlock", layers: Sequence[int] = (2, 2, 2, 2),
                 use_se: bool = False):
        super().__init__()
        if isinstance(block, str):
            if block not in BLOCKS_BY_NAME:
                raise ValueError(f"unknown ArcFace block {block!r}; expected one of {sorted(BLOCKS_BY_NAME)}")
            block = BLOCKS_BY_NAME[block]
        if len(layers) != 4:
            raise ValueError(f"ArcFace needs 4 stage depths, got layers={tuple(layers)}")
        self.use_se = use_se
        self.in_channels = 64
        self.conv1 = nn.Conv2d(1, 64, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.prelu = nn.PReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.layer1 = self._make_stage(block, 64, layers[0])
        self.layer2 = self._make_stage(block, 128, layers[1], stride=2)
        self.layer3 = self._make_stage(block, 256, layers[2], stride=2)
        self.layer4 = self._make_stage(block, 512, layers[3], stride=2)
        self.bn4 = nn.BatchNorm2d(512 * block.expansion)
        self.dropout = nn.Dropout()
        self.fc5 = nn.Linear(512 * block.expansion * 8 * 8, 512)
        self.bn5 = nn.BatchNorm1d(512)

        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_stage(self, block: Block, channels: int, num_blocks: int, stride: int = 1) -> nn.Sequential:
        out_channels = channels * block.expansion
        downsample = None
        if stride != 1 or self.in_channels != out_channels:
            downsample = nn.Sequential(
                nn.Conv2d(self.in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        blocks = [block(self.in_channels, channels, stride, downsample, use_se=self.use_se)]
        self.in_channels = out_channels
        for _ in range(1, num_blocks):
            blocks.append(block(self.in_channels, channels, use_se=self.use_se))
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 1, 128, 128] grayscale in [-1, 1] -> [B, 512] identity embedding."""
        if x.dim() != 4 or x.shape[1:] != (1, 128, 128):
            raise ValueError(f"ResNetArcFace expects [B, 1, 128, 128] grayscale input, got {list(x.shape)}")
        x = self.maxpool(self.prelu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn4(x))
        x = self.fc5(x.flatten(1))
        return self.bn5(x)


def identity_gray(images: torch.Tensor) -> torch.Tensor:
    """RGB [B, 3, H, W] -> gray [B, 1, H, W]: 0.2989 R + 0.5870 G + 0.1140 B (GFP-GAN's weights)."""
    return (0.2989 * images[:, 0] + 0.5870 * images[:, 1] + 0.1140 * images[:, 2]).unsqueeze(1)


def gray_resize_for_identity(images: torch.Tensor, size: int = 128) -> torch.Tensor:
    """RGB [B, 3, H, W] -> gray [B, 1, size, size]: 0.2989 R + 0.5870 G + 0.1140 B, then bilinear
    resize (``align_corners=False``), as GFP-GAN's ``gray_resize_for_identity``. Range is kept."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"gray_resize_for_identity expects [B, 3, H, W] RGB, got {list(images.shape)}")
    return F.interpolate(identity_gray(images), (size, size), mode="bilinear", align_corners=False)


def _arcface_options(shapes: Shapes) -> dict:
    layers = [len(indices(shapes, rf"layer{k}\.(\d+)\.conv1\.weight")) for k in (1, 2, 3, 4)]
    if "layer1.0.bn0.weight" in shapes:
        block = "IRBlock"
    elif "layer1.0.conv3.weight" in shapes:
        block = "Bottleneck"
    else:
        block = "BasicBlock"
    use_se = any(k.startswith("layer1.0.se.") for k in shapes)
    return dict(block=block, layers=layers, use_se=use_se)


ARCHITECTURE = Architecture(
    name="ResNetArcFace",
    network=ResNetArcFace,
    purpose="identity",
    layout=lambda shapes: "layer1.0.conv1.weight" in shapes and "fc5.weight" in shapes,
    options=_arcface_options,
    description="ArcFace ResNet: identity embeddings (GFP-GAN's identity loss, the Deg metric)",
)

"""What a loaded model is and can do: :class:`ModelDescriptor`.

:func:`faceprior.models.loading.resolve_model` turns any model spec (a catalogue name, a path, a
URL, an ``nn.Module``) into one descriptor; everything that uses a model (the restorer, the
evaluation runner, training warm starts, ``convert``, ``export``, the fast CPU path) reads what it
needs from the descriptor instead of guessing from the network's attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import nn

from faceprior.errors import FacepriorError
from faceprior.models.architecture import Architecture, Capabilities
from faceprior.weights.catalogue import WeightFile

__all__ = ["ModelDescriptor", "NotARestorationModelError"]


class NotARestorationModelError(FacepriorError, ValueError):
    """A model that does not restore faces (a discriminator, a generator, ...) was given where one must."""


@dataclass
class ModelDescriptor:
    """A network with loaded weights, and what it is.

    Attributes:
        network: the module, in eval mode.
        architecture: what its class declares (:class:`~faceprior.models.architecture.Architecture`).
        options: the constructor arguments it was built with.
        name: what to call it in messages and reports: the catalogue name, else the file name.
        source: where the weights came from: a path or URL, or "a module passed in".
        entry: its weight-catalogue entry, if it has one.
    """

    network: nn.Module
    architecture: Architecture
    options: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    source: str = ""
    entry: Optional[WeightFile] = None

    @property
    def arch(self) -> str:
        """The official class name."""
        return self.architecture.name

    @property
    def purpose(self) -> str:
        return self.architecture.purpose

    @property
    def capabilities(self) -> Capabilities:
        return self.architecture.capabilities

    @property
    def value_range(self) -> tuple[float, float]:
        """The pixel range of the network's input and output images."""
        return self.architecture.value_range

    @property
    def face_size(self) -> Optional[int]:
        """Restoration models: the side S of the square aligned faces they take and return."""
        if self.architecture.face_size is None:
            return None
        return int(self.architecture.face_size(self.options))

    @property
    def framing(self) -> str:
        """Restoration models: the face framing they were trained on (a template name)."""
        if self.entry is not None and self.entry.framing is not None:
            return self.entry.framing
        return self.architecture.framing

    @property
    def license(self) -> str:
        """The licence of the weights: the catalogue's, else what is known of the architecture's releases."""
        if self.entry is not None:
            return self.entry.license
        known = f"; the official {self.arch} weights are {self.architecture.weights_license}" \
            if self.architecture.weights_license else ""
        return f"unknown (not a catalogue file{known})"

    def require_restoration(self) -> "ModelDescriptor":
        """This descriptor, or :class:`NotARestorationModelError` for a network that does not restore faces."""
        if self.purpose != "restoration":
            raise NotARestorationModelError(
                f"{self.name or self.source}: holds a {self.arch} ({self.architecture.description or self.purpose}), "
                "not a face-restoration model; faceprior models lists the restoration models")
        return self

    def restore(self, x: torch.Tensor, fidelity: Optional[float] = None, randomize_noise: bool = False,
                network: Optional[nn.Module] = None) -> torch.Tensor:
        """Restore aligned faces: x [B, 3, S, S] in ``value_range`` -> [B, 3, S, S] (not clamped).

        fidelity: for models with a fidelity control (``capabilities.fidelity``), in [0, 1];
            ignored (must be None) otherwise.
        randomize_noise: draw fresh decoder noise (stochastic models); False = stored noise.
        network: run this module instead of ``self.network`` (e.g. the fast CPU module built for it).
        """
        self.require_restoration()
        if fidelity is not None and not self.capabilities.fidelity:
            raise ValueError(f"{self.name}: {self.arch} has no fidelity control")
        return self.architecture.restore(network if network is not None else self.network, x, fidelity,
                                         randomize_noise)

    def summary(self) -> str:
        """One line: name, architecture, face size and licence."""
        size = f", {self.face_size} px faces" if self.face_size else ""
        return f"{self.name} ({self.arch}{size}; licence: {self.license})"

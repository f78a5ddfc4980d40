"""Processes, devices and data sharding for training, single-process or DistributedDataParallel.

Distributed runs are started by ``torchrun`` (``torchrun --nproc_per_node N -m faceprior train
CONFIG``), which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; :func:`setup_distributed` reads them and joins the process group (NCCL on CUDA,
gloo on CPU). Without them the run is a single process and nothing is initialised.

Data: every process sees a disjoint slice of one shuffled order per epoch
(:class:`ResumableDistributedSampler`, torch's ``DistributedSampler`` plus a starting offset, so
a resumed run continues mid-epoch), and :class:`BatchStream` turns it into an endless stream of
batches that remembers its position (epoch, batches consumed) for checkpoints. With world size W
and per-process batch B, global batch k of an epoch is the samples ``perm[k*W*B : (k+1)*W*B]``,
rank r holding ``perm[k*W*B + r :: W]``'s first B: a single process with batch W*B consumes the
same samples per step.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from faceprior.hardware import native_bf16_available
from faceprior.training.config import ConfigError

__all__ = [
    "BatchStream",
    "DistributedContext",
    "ResumableDistributedSampler",
    "all_gather_objects",
    "cleanup_distributed",
    "reduce_mean",
    "setup_distributed",
]


@dataclass
class DistributedContext:
    """Where this process runs: rank, world size, device, and whether DDP is active.

    Attributes:
        rank, world_size, local_rank: torchrun's; (0, 1, 0) for a single process.
        device: this process's torch device (``cuda:LOCAL_RANK`` or ``cpu``).
        amp_dtype: bfloat16 when mixed precision is on, else None.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    amp_dtype: Optional[torch.dtype] = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, validates and writes checkpoints."""
        return self.rank == 0

    def wrap(self, module: nn.Module, find_unused_parameters: bool = False) -> nn.Module:
        """``module`` inside DistributedDataParallel when distributed, else ``module`` itself.

        Buffers are not broadcast (the networks' buffers are constants: FIR kernels, noise maps).
        Modules without trainable parameters are never wrapped.
        """
        if not self.distributed or not any(p.requires_grad for p in module.parameters()):
            return module
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=device_ids, broadcast_buffers=False,
                                                   find_unused_parameters=find_unused_parameters)

    def no_sync(self, module: nn.Module, skip_sync: bool):
        """Context: no gradient all-reduce in this backward (``skip_sync``), for accumulation steps."""
        if skip_sync and isinstance(module, nn.parallel.DistributedDataParallel):
            return module.no_sync()
        return contextlib.nullcontext()

    def autocast(self):
        """Context: bf16 autocast of the forwards when mixed precision is on, else nothing."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def setup_distributed(device: str = "auto", amp: str = "fp32") -> DistributedContext:
    """The process context from torchrun's environment; joins the process group if WORLD_SIZE > 1.

    device: ``auto`` (CUDA if available), ``cpu`` or ``cuda``. amp: ``fp32`` or ``bf16`` (on CUDA
    only if the GPU supports bf16; on a CPU only with native bf16, AVX512-BF16 or AMX: elsewhere
    autocast emulates it, one convolution taking seconds, so it is refused with a ConfigError).
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError("train.device is cuda but no CUDA device is available")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
    else:
        torch_device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world_size)
    amp_dtype = None
    if amp == "bf16":
        if use_cuda and not torch.cuda.is_bf16_supported():
            raise ConfigError("train.amp is bf16 but this GPU does not support bfloat16")
        if not use_cuda and not native_bf16_available():
            raise ConfigError("train.amp is bf16 but this CPU has no native bfloat16 (AVX512-BF16 or AMX): "
                              "emulated bf16 convolutions are many times slower than fp32; set train.amp: fp32")
        amp_dtype = torch.bfloat16
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=torch_device,
                              amp_dtype=amp_dtype)


def cleanup_distributed() -> None:
    """Leave the process group (if one was joined)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def reduce_mean(values: Mapping[str, torch.Tensor], ctx: DistributedContext) -> dict[str, float]:
    """Average scalar tensors over all processes (every process must call this). -> {name: float}."""
    names = sorted(values)
    if not names:
        return {}
    stacked = torch.stack([values[n].detach().float().reshape(()) for n in names]).to(ctx.device)
    if ctx.distributed:
        dist.all_reduce(stacked)
        stacked /= ctx.world_size
    return {name: float(v) for name, v in zip(names, stacked.cpu())}


def all_gather_objects(obj: Any, ctx: DistributedContext) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every process (``[obj]`` when not distributed)."""
    if not ctx.distributed:
        return [obj]
    gathered: list = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


class ResumableDistributedSampler(DistributedSampler):
    """torch's ``DistributedSampler`` (same shuffled order and rank slices) that can start an
    epoch after its first ``start`` indices (of this rank), to resume mid-epoch.

    Works without an initialised process group (``num_replicas`` and ``rank`` are explicit).
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, shuffle: bool = True, seed: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        super().set_epoch(epoch)
        self.start = int(start)

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.start:])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)


class BatchStream:
    """An endless stream of training batches over epochs, resumable at any batch.

    Each epoch calls ``sampler.set_epoch(epoch)`` and, if the dataset has it,
    ``dataset.set_epoch(epoch)`` (FaceDataset draws its degradations from (seed, epoch, index)).
    Incomplete final batches are dropped. ``position()`` / ``load_position()`` give / restore
    (epoch, batches consumed in that epoch). The DataLoader's own random seed comes from a private
    generator, so iterating never touches the global torch RNG.
    """

    def __init__(self, dataset: Dataset, batch_size: int, ctx: DistributedContext, seed: int,
                 num_workers: int = 0, shuffle: bool = True):
        self.dataset = dataset
        self.batch_size = batch_size
        self.sampler = ResumableDistributedSampler(dataset, ctx.world_size, ctx.rank, shuffle=shuffle, seed=seed)
        self.num_workers = num_workers
        self.pin_memory = ctx.device.type == "cuda"
        self.seed = seed
        self.epoch = 0
        self.batches_done = 0
        self._iterator: Optional[Iterator] = None
        self.batches_per_epoch = self.sampler.num_samples // batch_size  # indices per rank and epoch
        if self.batches_per_epoch < 1:
            raise ConfigError(f"data.batch_size: {len(dataset)} training images give no full batch of {batch_size} "
                              f"per process over {ctx.world_size} process(es)")

    def position(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches_done": self.batches_done}

    def load_position(self, position: Mapping[str, int]) -> None:
        self.epoch = int(position["epoch"])
        self.batches_done = int(position["batches_done"])
        self._iterator = None

    def _start_epoch(self) -> Iterator:
        self.sampler.set_epoch(self.epoch, start=self.batches_done * self.batch_size)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        loader = DataLoader(self.dataset, batch_size=self.batch_size, sampler=self.sampler, drop_last=True,
                            num_workers=self.num_workers, pin_memory=self.pin_memory, generator=generator,
                            persistent_workers=False)
        return iter(loader)

    def __iter__(self) -> "BatchStream":
        return self

    def __next__(self) -> dict:
        while True:
            if self.batches_done >= self.batches_per_epoch:
                self.epoch += 1
                self.batches_done = 0
                self._iterator = None
            if self._iterator is None:
                self._iterator = self._start_epoch()
            try:
                batch = next(self._iterator)
            except StopIteration:  # only if the dataset shrank; move on to the next epoch
                self.batches_done = self.batches_per_epoch
                continue
            self.batches_done += 1
            return batch

"""Training configuration: plain YAML mapped onto nested dataclasses.

A config file has six top-level keys; every other key, at any depth, is an error::

    task: gfpgan                 # gfpgan (restoration, train_gfpgan.py) or stylegan2 (the prior)
    model: {...}                 # ModelConfig: architecture, warm starts, auxiliary networks
    data: {...}                  # DataConfig: folders, size, degradation overrides, batch size
    losses: {...}                # faceprior.training.losses.LossWeights: one weight per term
    optim: {...}                 # OptimConfig: Adam learning rates / betas, LR milestones
    train: {...}                 # RunConfig: iterations, EMA, accumulation, AMP, intervals, out_dir

Missing keys take the dataclass defaults (the official ``train_gfpgan_v1.yml`` values where one
exists). Values are checked against the field types; PyYAML reads ``2e-3`` (no dot) as a string,
so number fields also accept such strings. Relative paths are relative to the working directory
(as in basicsr). Errors are :class:`ConfigError` with a one-line message naming the file and
the key, e.g. ``configs/x.yaml: unknown key 'optim.lr_gg' (known in optim: lr_g, lr_d, ...)``.

EMA decay (``train.ema_decay``): StyleGAN2 (Karras et al. 2020, and rosinality's port that basicsr
and GFP-GAN copy) averages the generator with a half-life of 10k images, i.e. a per-step decay of
``0.5 ** (global_batch / 10_000)``; the official code hard-codes ``0.5 ** (32 / 10_000)`` (batch
32) whatever the real batch (12 for GFP-GAN, 24 for the basicsr StyleGAN2 recipe). Here the decay
is derived from the actual global batch (per-process batch x processes x accumulation steps) and
``train.ema_half_life_images`` unless ``train.ema_decay`` sets it explicitly; the shipped
official-recipe configs set the official constant explicitly.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import yaml

from faceprior.errors import FacepriorError
from faceprior.paths import atomic_write
from faceprior.training.degradations import DegradationConfig, DegradationConfigError
from faceprior.training.losses import LossWeights

__all__ = [
    "AMP_MODES",
    "ConfigError",
    "DataConfig",
    "GFPGAN_ARCHS",
    "ModelConfig",
    "OFFICIAL_EMA_DECAY",
    "OptimConfig",
    "RunConfig",
    "STYLEGAN2_ARCHS",
    "TASKS",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "config_to_yaml",
    "ema_decay",
    "lazy_regularization_ratio",
    "load_config",
    "save_config",
    "set_dotted",
    "with_values",
]

TASKS = ("gfpgan", "stylegan2")
GFPGAN_ARCHS = ("GFPGANv1", "GFPGANv1Clean", "GFPGANBilinear")
IDENTITY_NETS = ("arcface", "dlib")
STYLEGAN2_ARCHS = ("StyleGAN2Generator", "StyleGAN2GeneratorClean")
AMP_MODES = ("fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")

# gfpgan_model.py / stylegan2_model.py: model_ema(decay=0.5 ** (32 / (10 * 1000))).
OFFICIAL_EMA_DECAY = 0.5 ** (32 / (10 * 1000))


class ConfigError(FacepriorError, ValueError):
    """A training config is invalid; the message is one line naming the file and the key."""


@dataclass
class ModelConfig:
    """Networks. (``model:`` section)

    Attributes:
        arch: generator class, official name: GFPGANv1 / GFPGANv1Clean / GFPGANBilinear for
            ``task: gfpgan``, StyleGAN2Generator / StyleGAN2GeneratorClean for ``task: stylegan2``.
        kwargs: generator constructor kwargs (``out_size`` must equal ``data.size``); not
            ``decoder_load_path`` / ``fix_decoder``, which have their own keys.
        decoder_load_path: GFP-GAN: a StyleGAN2 generator checkpoint loaded into the decoder
            (``params_ema`` preferred): an official StyleGAN2 file or a ``net_g_*.pth`` exported by
            ``task: stylegan2``.
        fix_decoder: GFP-GAN: freeze the StyleGAN2 decoder (paper: true; v1.3-style: false).
        train_only_input_gate: GFP-GAN with ``kwargs.input_gate``: train the input gate alone
            (G's optimiser holds its parameters, at ``optim.lr_g``); every other generator
            parameter is frozen and gets no gradient, so an iteration costs a forward of G, the
            gate's backward and the loss networks' (with ``losses.gan: 0`` no discriminator step).
            For calibrating a gate added to a finished generator.
        pretrained: warm start the whole generator (and its EMA) from a checkpoint: a path or a
            registered model name (``faceprior models``), e.g. ``gfpgan-1.4``; read like
            ``faceprior.load_model`` (``params_ema``, then ``params``), loaded strictly.
        discriminator: StyleGAN2Discriminator kwargs besides ``out_size`` (channel_multiplier,
            narrow, stddev_group, resample_kernel).
        pretrained_d, pretrained_d_left_eye, pretrained_d_right_eye, pretrained_d_mouth:
            discriminator warm starts (``params`` checkpoints as basicsr writes them).
        identity_net: the network of the identity loss: ``arcface`` (the paper's; weights in
            ``arcface``) or ``dlib`` (dlib's face-recognition ResNet from the installed
            ``face-recognition-models`` package, read by :mod:`faceprior.models.dlib_resnet`: the
            offline replacement; distance of :class:`faceprior.training.losses.DlibIdentityLoss`).
        dlib_resnet: with ``identity_net: dlib``, the weights of dlib's face-recognition ResNet:
            a ``.dat`` file or a ``.safetensors`` state dict of ``DlibFaceResNet`` (null: the
            ``.dat`` of the installed ``face-recognition-models`` package).
        dlib_chip_box: with ``identity_net: dlib``, the (left, top, right, bottom) box of dlib's
            recognition chip in pixels of ``data.size`` (null: measured with dlib's detector on the
            first training faces, which needs the ``dlib`` package). Given with ``dlib_resnet``,
            the identity loss needs neither ``dlib`` nor ``face-recognition-models`` (on a machine
            that cannot install them).
        arcface: ArcFace weights for the identity loss (``arcface_resnet18.pth``).
        random_arcface: allow a randomly initialised ArcFace when ``arcface`` is not given (the
            identity loss then only constrains the output to a random feature space: a warning
            is printed).
        vgg: torchvision VGG19 weights (``vgg19-dcbb9e9d.pth``) for the perceptual/style loss.
        random_vgg: allow a randomly initialised VGG19 when ``vgg`` is not given (random conv
            features still make a usable, weaker perceptual loss: a warning is printed).
    """

    arch: str = "GFPGANv1Clean"
    kwargs: dict = field(default_factory=dict)
    decoder_load_path: Optional[str] = None
    fix_decoder: bool = True
    train_only_input_gate: bool = False
    pretrained: Optional[str] = None
    discriminator: dict = field(default_factory=dict)
    pretrained_d: Optional[str] = None
    pretrained_d_left_eye: Optional[str] = None
    pretrained_d_right_eye: Optional[str] = None
    pretrained_d_mouth: Optional[str] = None
    identity_net: str = "arcface"
    dlib_resnet: Optional[str] = None
    dlib_chip_box: Optional[tuple[float, float, float, float]] = None
    arcface: Optional[str] = None
    random_arcface: bool = False
    vgg: Optional[str] = None
    random_vgg: bool = False


@dataclass
class DataConfig:
    """Training and validation data. (``data:`` section)

    Attributes:
        train: folder of aligned high-quality faces (read recursively).
        val: folder of validation faces (degraded once with ``val_seed``), or null.
        val_count: use the first N validation images (sorted by path); null: all.
        val_seed: seed of the fixed validation degradations.
        val_batch_size: faces per forward during validation.
        size: training resolution S (faces are resized to S x S); equals ``model.kwargs.out_size``.
        flip: random horizontal flips.
        degradation: overrides of :class:`faceprior.training.degradations.DegradationConfig`.
        component_boxes: facial component boxes (official ``FFHQ_eye_mouth_landmarks_512.pth`` or
            a ``faceprior prepare-components`` JSON); null disables the component discriminators.
        eye_enlarge_ratio: eye boxes are enlarged by this (official 1.4).
        num_workers: DataLoader worker processes per training process.
        batch_size: faces per process and per accumulation step.
    """

    train: str = ""
    val: Optional[str] = None
    val_count: Optional[int] = None
    val_seed: int = 0
    val_batch_size: int = 8
    size: int = 512
    flip: bool = True
    degradation: dict = field(default_factory=dict)
    component_boxes: Optional[str] = None
    eye_enlarge_ratio: float = 1.4
    num_workers: int = 2
    batch_size: int = 3

    def degradation_config(self) -> DegradationConfig:
        """The degradation model: official defaults with ``degradation`` overrides applied."""
        return DegradationConfig.from_dict(self.degradation, source="data.degradation")


@dataclass
class OptimConfig:
    """Adam optimisers and the multi-step LR schedule. (``optim:`` section)

    Official (gfpgan_model.py ``setup_optimizers``): G and D Adam with betas (0, 0.99), the
    facial-component discriminators (0.9, 0.99), all lr 2e-3. For a lazily regularised network
    (D with R1 every ``losses.r1_every`` = k steps; the StyleGAN2 G with path length every
    ``losses.path_length_every``) the betas become ``beta ** (k / (k + 1))`` and, with
    ``lazy_reg_lr_scaling``, the lr ``lr * k / (k + 1)`` (StyleGAN2 paper, appendix B). basicsr
    passes the scaled lr as Adam's default but also sets ``lr`` in the parameter group, which
    wins, so its effective lr is *not* scaled: the official-recipe configs set
    ``lazy_reg_lr_scaling: false`` to reproduce that.

    The learning rate of (1-based) iteration i is ``lr * gamma ** (number of milestones <= i)``
    (basicsr's MultiStepLR, stepped before each iteration).

    ``lr_input_gate``: the lr of the input gate conv of ``GFPGANv1Clean(input_gate=True)`` (its own
    Adam, ``optimizer_input_gate``, betas ``betas_g``); null: it trains with G's optimiser at
    ``lr_g``. The gate starts at zero weights: at a fine-tuning lr of 1e-4 its 73 parameters
    moved by at most 0.005 in 200 iterations (the gate stayed closed), hence a larger lr of its own.
    """

    lr_g: float = 2e-3
    lr_d: float = 2e-3
    lr_component: float = 2e-3
    lr_input_gate: Optional[float] = None
    betas_g: tuple[float, float] = (0.0, 0.99)
    betas_d: tuple[float, float] = (0.0, 0.99)
    betas_component: tuple[float, float] = (0.9, 0.99)
    lazy_reg_lr_scaling: bool = True
    milestones: tuple[int, ...] = (600_000, 700_000)
    gamma: float = 0.5


@dataclass
class RunConfig:
    """The loop. (``train:`` section)

    Attributes:
        out_dir: run folder: checkpoints/, models/, metrics.jsonl, samples/, config.yaml, tb/.
        total_iter: number of iterations (one optimiser step of every network each).
        ema_decay: per-iteration EMA decay of the generator; null: ``0.5 ** (global_batch /
            ema_half_life_images)`` (see the module docstring).
        ema_half_life_images: EMA half-life in training images (StyleGAN2: 10k).
        grad_accum: micro-batches accumulated per optimiser step (global batch = batch_size x
            processes x grad_accum).
        amp: ``fp32`` (no mixed precision) or ``bf16`` (autocast of the network forwards; losses in fp32).
        device: ``auto`` (CUDA if available), ``cpu`` or ``cuda``.
        seed: seeds the initial weights (same on every process) and, offset by the rank, the
            training noise; the data order depends on it too.
        save_every: write a resumable checkpoint every N iterations (and at the end).
        keep_checkpoints: keep the newest N checkpoints (and exported generators).
        keep_generators_every: also keep every exported generator (``models/net_g_*.pth``, the
            small files) whose iteration is a multiple of N, for picking or comparing later
            (null: only the newest ``keep_checkpoints``).
        val_every: validate / write sample grids every N iterations (0: never).
        log_every: log training scalars every N iterations.
        mixing_prob: StyleGAN2 style-mixing probability (official 0.9).
        num_threads: torch CPU threads per process (null: leave torch's default).
        blowup_factor: stop the run (before its next checkpoint) when a logged generator loss
            (``l_g*``) rises above this many times the median of its earlier logged values, as
            when the weights blow up without becoming NaN (0: never).
    """

    out_dir: str = ""
    total_iter: int = 800_000
    ema_decay: Optional[float] = None
    ema_half_life_images: float = 10_000.0
    grad_accum: int = 1
    amp: str = "fp32"
    device: str = "auto"
    seed: int = 0
    save_every: int = 5000
    keep_checkpoints: int = 2
    keep_generators_every: Optional[int] = None
    val_every: int = 5000
    log_every: int = 100
    mixing_prob: float = 0.9
    num_threads: Optional[int] = None
    blowup_factor: float = 1000.0


@dataclass
class TrainConfig:
    """A whole training config (see the module docstring). ``source`` names the file it came from."""

    task: str = "gfpgan"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    losses: LossWeights = field(default_factory=LossWeights)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: RunConfig = field(default_factory=RunConfig)
    source: str = field(default="<config>", compare=False, repr=False)

    def global_batch(self, world_size: int) -> int:
        """Training faces per optimiser step over all processes."""
        return self.data.batch_size * world_size * self.train.grad_accum


# Keys of TrainConfig that are sections of the file (``source`` is not one).
SECTIONS = ("task", "model", "data", "losses", "optim", "train")


# ----------------------------------------------------------------------------------------------
# Derived quantities


def ema_decay(config: TrainConfig, world_size: int) -> float:
    """Per-iteration EMA decay: ``train.ema_decay``, else ``0.5 ** (global batch / half-life)``."""
    if config.train.ema_decay is not None:
        return float(config.train.ema_decay)
    return 0.5 ** (config.global_batch(world_size) / config.train.ema_half_life_images)


def lazy_regularization_ratio(weight: float, every: int) -> float:
    """``every / (every + 1)`` for a lazily applied regulariser with a positive weight, else 1."""
    return every / (every + 1) if weight > 0 else 1.0


# ----------------------------------------------------------------------------------------------
# Dict <-> dataclasses


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _convert(hint: Any, value: Any, key: str, source: str) -> Any:
    """``value`` checked against the type hint ``hint`` (and normalised: lists -> tuples, ints -> floats)."""
    origin = typing.get_origin(hint)
    if origin is Union:
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        inner = [option for option in options if option is not type(None)]
        return _convert(inner[0], value, key, source)
    if dataclasses.is_dataclass(hint):
        return _from_mapping(hint, value, f"{key}.", source)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():  # 5e3 in YAML is a float
                return int(value)
            raise ConfigError(f"{source}: {key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # PyYAML reads 2e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{source}: {key}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{source}: {key}: expected a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {key}: expected a string, got {value!r}")
        return value
    if hint is dict or origin is dict:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{source}: {key}: expected a mapping, got {value!r}")
        return {str(k): v for k, v in value.items()}
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], item, f"{key}[{i}]", source) for i, item in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{source}: {key}: expected a list of {len(args)} values, got {list(value)!r}")
        return tuple(_convert(arg, item, f"{key}[{i}]", source) for i, (arg, item) in enumerate(zip(args, value)))
    raise TypeError(f"config field {key} has an unsupported type {_type_name(hint)}")  # a bug here, not user input


def _from_mapping(cls: type, data: Any, prefix: str, source: str) -> Any:
    section = prefix.rstrip(".") or "the top level"
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: {section}: expected a mapping of settings, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name != "source"]
    for key in data:
        if key not in names:
            raise ConfigError(f"{source}: unknown key '{prefix}{key}' (known in {section}: {', '.join(names)})")
    values = {name: _convert(hints[name], data[name], f"{prefix}{name}", source) for name in names if name in data}
    try:
        return cls(**values)
    except ValueError as error:  # e.g. LossWeights' own range checks
        raise ConfigError(f"{source}: {section}: {' '.join(str(error).split())}") from None


def config_from_dict(data: Any, source: str = "<config>") -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from parsed YAML; ``source`` names the file in errors."""
    config = _from_mapping(TrainConfig, data, "", source)
    config.source = source
    _validate(config)
    return config


def config_to_dict(config: TrainConfig) -> dict:
    """Plain dict (lists, not tuples) that :func:`config_from_dict` reads back to an equal config."""
    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    data = {}
    for name in SECTIONS:
        value = getattr(config, name)
        if dataclasses.is_dataclass(value):
            value = {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        data[name] = value
    return data


def config_to_yaml(config: TrainConfig) -> str:
    """The config as YAML text (every key, defaults included)."""
    return yaml.safe_dump(config_to_dict(config), sort_keys=False, default_flow_style=None)


def apply_overrides(data: Any, overrides: Sequence[str], source: str) -> dict:
    """Apply ``KEY=VALUE`` overrides (dotted keys, YAML values, e.g. ``train.total_iter=100``) to
    parsed YAML; returns a new dict. Unknown keys are caught later by the dataclass mapping."""
    data = copy.deepcopy(dict(data or {}))
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{source}: override {override!r} is not KEY=VALUE")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"{source}: override {override!r}: the value is not valid YAML") from None
        set_dotted(data, key.strip(), value, f"{source}: override {override!r}")
    return data


def set_dotted(data: dict, key: str, value: Any, where: str) -> None:
    """Set ``data[a][b][c] = value`` for the dotted ``key`` "a.b.c", making missing sections;
    ConfigError (prefixed with ``where``) when a part of the path is not a section."""
    parts = key.split(".")
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{where}: {'.'.join(parts[:depth + 1])} is not a section")
        node = child
    node[parts[-1]] = value


def with_values(config: TrainConfig, values: Mapping[str, Any], source: Optional[str] = None) -> TrainConfig:
    """``config`` with dotted keys set to Python values (``{"model.kwargs.out_size": 64}``),
    validated again; ``source`` names the result in errors (default: the config's own)."""
    data = config_to_dict(config)
    for key, value in values.items():
        set_dotted(data, key, value, config.source)
    return config_from_dict(data, source=config.source if source is None else source)


def load_config(path: Union[str, Path], overrides: Sequence[str] = ()) -> TrainConfig:
    """Read and validate a YAML training config, with optional ``KEY=VALUE`` overrides
    (:func:`apply_overrides`). Raises :class:`ConfigError` (one line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config ({error.strerror or error})") from None
    try:
        data = yaml.safe_load(io.StringIO(text))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML ({' '.join(str(error).split())})") from None
    if overrides:
        if data is not None and not isinstance(data, Mapping):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        data = apply_overrides(data, overrides, str(path))
    return config_from_dict(data, source=str(path))


def save_config(config: TrainConfig, path: Union[str, Path]) -> Path:
    """Write the config as YAML atomically (temporary file + rename)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        f.write(config_to_yaml(config).encode("utf-8"))
    return Path(path)


# ----------------------------------------------------------------------------------------------
# Cross-field checks


def _validate(config: TrainConfig) -> None:
    source = config.source

    def fail(key: str, reason: str) -> None:
        raise ConfigError(f"{source}: {key}: {reason}")

    if config.task not in TASKS:
        fail("task", f"must be one of {', '.join(TASKS)}, got {config.task!r}")
    archs = GFPGAN_ARCHS if config.task == "gfpgan" else STYLEGAN2_ARCHS
    model = config.model
    if model.arch not in archs:
        fail("model.arch", f"task {config.task} trains one of {', '.join(archs)}, got {model.arch!r}")
    for reserved in ("decoder_load_path", "fix_decoder"):
        if reserved in model.kwargs:
            fail(f"model.kwargs.{reserved}", f"use model.{reserved} instead")
    if "out_size" in model.discriminator:
        fail("model.discriminator.out_size", "is data.size; remove it")
    out_size = model.kwargs.get("out_size")
    if out_size != config.data.size:
        fail("model.kwargs.out_size", f"must equal data.size ({config.data.size}), got {out_size!r}")
    if model.identity_net not in IDENTITY_NETS:
        fail("model.identity_net", f"must be one of {', '.join(IDENTITY_NETS)}, got {model.identity_net!r}")
    box = model.dlib_chip_box
    if box is not None and not (box[2] > box[0] and box[3] > box[1]):
        fail("model.dlib_chip_box", f"must be [left, top, right, bottom] with right > left and bottom > top, got {list(box)}")
    if model.train_only_input_gate and not (config.task == "gfpgan" and model.kwargs.get("input_gate")):
        fail("model.train_only_input_gate", "needs a GFP-GAN generator with an input gate (model.kwargs.input_gate)")
    if model.train_only_input_gate and config.optim.lr_input_gate is not None:
        fail("optim.lr_input_gate", "does not apply with model.train_only_input_gate (the gate trains at optim.lr_g)")
    if config.task == "stylegan2" and (model.decoder_load_path or not model.fix_decoder):
        fail("model.decoder_load_path", "GFP-GAN decoder options do not apply to task stylegan2 (use model.pretrained)")

    data = config.data
    if not data.train:
        fail("data.train", "the training folder is required")
    if data.size < 8 or data.size & (data.size - 1):
        fail("data.size", f"must be a power of two >= 8, got {data.size}")
    for key in ("batch_size", "val_batch_size"):
        if getattr(data, key) < 1:
            fail(f"data.{key}", f"must be >= 1, got {getattr(data, key)}")
    if data.num_workers < 0:
        fail("data.num_workers", f"must be >= 0, got {data.num_workers}")
    if data.val_count is not None and data.val_count < 1:
        fail("data.val_count", f"must be >= 1 or null, got {data.val_count}")
    try:
        data.degradation_config()
    except DegradationConfigError as error:
        raise ConfigError(f"{source}: {error}") from None

    optim = config.optim
    for key in ("lr_g", "lr_d", "lr_component", "gamma"):
        if getattr(optim, key) <= 0:
            fail(f"optim.{key}", f"must be > 0, got {getattr(optim, key)}")
    if optim.lr_input_gate is not None:
        if optim.lr_input_gate <= 0:
            fail("optim.lr_input_gate", f"must be > 0 or null, got {optim.lr_input_gate}")
        if not config.model.kwargs.get("input_gate"):
            fail("optim.lr_input_gate", "is set but the generator has no input gate (model.kwargs.input_gate)")
    for key in ("betas_g", "betas_d", "betas_component"):
        if not all(0.0 <= b < 1.0 for b in getattr(optim, key)):
            fail(f"optim.{key}", f"betas must be in [0, 1), got {list(getattr(optim, key))}")
    if list(optim.milestones) != sorted(optim.milestones):
        fail("optim.milestones", f"must be increasing, got {list(optim.milestones)}")

    run = config.train
    if not run.out_dir:
        fail("train.out_dir", "the output folder is required")
    for key in ("total_iter", "grad_accum", "save_every", "keep_checkpoints", "log_every"):
        if getattr(run, key) < 1:
            fail(f"train.{key}", f"must be >= 1, got {getattr(run, key)}")
    if run.val_every < 0:
        fail("train.val_every", f"must be >= 0, got {run.val_every}")
    if run.keep_generators_every is not None and run.keep_generators_every < 1:
        fail("train.keep_generators_every", f"must be >= 1 or null, got {run.keep_generators_every}")
    if run.ema_decay is not None and not 0.0 <= run.ema_decay < 1.0:
        fail("train.ema_decay", f"must be in [0, 1), got {run.ema_decay}")
    if run.ema_half_life_images <= 0:
        fail("train.ema_half_life_images", f"must be > 0, got {run.ema_half_life_images}")
    if run.amp not in AMP_MODES:
        fail("train.amp", f"must be one of {', '.join(AMP_MODES)}, got {run.amp!r}")
    if run.device not in DEVICES:
        fail("train.device", f"must be one of {', '.join(DEVICES)}, got {run.device!r}")
    if not 0.0 <= run.mixing_prob <= 1.0:
        fail("train.mixing_prob", f"must be in [0, 1], got {run.mixing_prob}")
    if run.num_threads is not None and run.num_threads < 1:
        fail("train.num_threads", f"must be >= 1 or null, got {run.num_threads}")

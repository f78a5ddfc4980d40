"""``faceprior restore``: restore the faces of photos (files, folders, globs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Union

from faceprior.cli.common import CommandError
from faceprior.errors import OptionError, printable
from faceprior.face.templates import TEMPLATES
from faceprior.imaging.files import is_video_file
from faceprior.imaging.io import DEFAULT_MAX_PIXELS
from faceprior.restoration.batch import (
    find_inputs,
    format_summary,
    plan_outputs,
    restore_files,
    restore_videos,
    writes_into_an_input_folder,
)
from faceprior.restoration.restorer import PRECISIONS, FaceRestorer, parse_face_positions

__all__ = ["add_restore_command"]


def blend_weight(text: str) -> Union[float, str]:
    """--weight: "auto" or a number in [0, 1]."""
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a number in [0, 1], got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected auto or a number in [0, 1], got {text}")
    return value


def face_positions(text: str) -> tuple[int, ...]:
    """--faces: "0,2" -> (0, 2) (positions >= 0, largest face first)."""
    try:
        return parse_face_positions(text)
    except OptionError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_restore_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "restore",
        help="restore the faces in photos (files, folders, globs)",
        description="Detect, align, restore and paste back every face of each input photo. "
        "Inputs are never modified; outputs are written atomically into OUTDIR.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (recursive) or glob patterns")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    parser.add_argument("--model", default=None, help="catalogue name (see `faceprior models`: gfpgan-1.4, restoreformer, "
                        "restoreformer++, codeformer, gpen-bfr-512, ...) or checkpoint path; default: the best restoration "
                        "model present")
    parser.add_argument("--template", default=None, choices=tuple(TEMPLATES),
                        help="photos: the face framing the model was trained on (default: a catalogue model's own, "
                        "else its architecture's usual one; celeba-hq for models trained on faces-train-256). "
                        "--aligned: the framing of the input faces (default ffhq)")
    parser.add_argument("--detector", default="mtcnn", choices=("mtcnn", "retinaface", "retinaface-mobilenet"))
    parser.add_argument("--aligned", action="store_true",
                        help="inputs are aligned faces of any size (FFHQ framing unless --template says otherwise): "
                        "no detection; each is re-framed for the model and returned at its own size")
    parser.add_argument("--only-center-face", action="store_true", help="restore only the face nearest the centre")
    parser.add_argument("--min-face", type=float, default=0.0, metavar="PX", help="ignore faces smaller than PX pixels")
    parser.add_argument("--max-faces", type=int, default=None, metavar="N", help="restore at most the N largest faces")
    parser.add_argument("--faces", type=face_positions, default=None, metavar="I,J",
                        help="restore only these faces, by position among the detected faces, largest first "
                        "(0 = the largest; see --report); the others are left as they are")
    parser.add_argument("--upscale", type=float, default=1.0, metavar="F", help="enlarge the whole image by F >= 1")
    parser.add_argument("--bg-upsampler", default="lanczos", choices=("lanczos", "realesrgan"),
                        help="background upsampler for --upscale > 1; realesrgan: Real-ESRGAN x2 (RealESRGAN_x2plus.pth)")
    parser.add_argument("--bg-tile", type=int, default=400, metavar="PX",
                        help="tile size of the realesrgan upsampler, 0 = whole image (default 400)")
    parser.add_argument("--parse-mask", action="store_true",
                        help="paste faces with a face-parsing mask (facexlib ParseNet, parsing_parsenet.pth) "
                        "instead of the soft rectangle")
    parser.add_argument("--weight", type=blend_weight, default="auto", metavar="auto|W",
                        help="blend of restored and input face: auto (default) chooses per face, from 0 for a face that "
                        "is sharp already to near 1 for one the model helps a lot; a number W forces it: 1 = restored "
                        "face, 0 = input face")
    parser.add_argument("--keep-tone", action=argparse.BooleanOptionalAction, default=True,
                        help="on a toned photo (sepia, cyanotype, a tinted black-and-white scan) give the restored faces "
                        "the photo's tone (default); --no-keep-tone keeps the model's colours. Black-and-white photos "
                        "always get grey faces")
    parser.add_argument("--refine-landmarks", action=argparse.BooleanOptionalAction, default=True,
                        help="move the detector's landmarks of each face to where it would have put them on the sharp "
                        "face, so that blurred faces are aligned closer to the model's template (default); "
                        "--no-refine-landmarks uses the detector's as they are")
    parser.add_argument("--keep-white-balance", action="store_true",
                        help="on a colour photo, keep its white balance: the faces (and the photo around them) get the "
                        "model's brightness, contrast and saturation changes but no colour cast added or taken off "
                        "(the model warms cool photos towards the skin of its training faces)")
    parser.add_argument("--surroundings", action="store_true",
                        help="for a model trained on a framing tighter than FFHQ's (faceprior-256), also restore each "
                        "face's surroundings (hair, neck, background near it) with a second pass in the FFHQ framing, "
                        "keeping the photo's colours; may draw halos along hair outlines on heavily blurred faces")
    parser.add_argument("--background", action=argparse.BooleanOptionalAction, default=True,
                        help="also restore the photo around its faces (hair, clothes, background: blur, noise, JPEG "
                        "blocks) with a small photo restorer, as much as its faces were restored (default); "
                        "--no-background leaves everything but the faces as it was")
    parser.add_argument("--fidelity", type=float, default=None, metavar="F",
                        help="models with a fidelity control (CodeFormer's w): 0 = most generative, 1 = closest to "
                        "the input (default: the model's, 0.5 for CodeFormer)")
    parser.add_argument("--seed", type=int, default=None, metavar="S",
                        help="use random decoder noise from seed S (default: the stored noise, deterministic)")
    parser.add_argument("--batch-size", type=int, default=4, metavar="N", help="faces per network forward (faces of several photos share a forward)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="fp32: the model's fast path where it has one, same results to float rounding (default); "
                        "reference: the unmodified forward; bf16: bfloat16 (GFP-GAN ~4x faster on CPUs with "
                        "AVX512-BF16/AMX, ~50 dB PSNR vs fp32; GPEN 45 dB; refused for the codebook models, "
                        "docs/models.md); auto: bf16 where native and the model keeps its quality, else fp32")
    parser.add_argument("--ext", default=None, help="output format (jpg, png, webp, bmp, tif); default: the input's")
    parser.add_argument("--save-faces", action="store_true", help="also write the aligned and restored face crops")
    parser.add_argument("--save-compare", action="store_true", help="also write input|restored face comparisons")
    parser.add_argument("--report", action="store_true", help="also write a JSON report per image")
    parser.add_argument("--skip-existing", action="store_true", help="skip inputs whose output exists (resume a batch)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (never inputs)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                        help="refuse images larger than N pixels (default %(default)s)")
    scale = parser.add_argument_group("archive scale (--engine ray; needs faceprior[ray]; docs/scale.md)")
    scale.add_argument("--engine", default="local", choices=("local", "ray"),
                       help="local: this process (default); ray: Ray Data on a Ray cluster, resumable through a "
                       "manifest; INPUT may then also be a URI pyarrow opens (s3://..., gs://...)")
    scale.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    scale.add_argument("--actors", type=int, default=1, metavar="N", help="model actors (one model each; default 1)")
    scale.add_argument("--gpus-per-actor", type=float, default=0.0, metavar="G", help="GPUs per actor (default 0)")
    scale.add_argument("--cpus-per-actor", type=float, default=1.0, metavar="C",
                       help="CPUs (and torch threads) per actor (default 1)")
    scale.add_argument("--manifest", default=None, metavar="FILE",
                       help="JSON-lines manifest (default OUTDIR/faceprior-manifest.jsonl); a re-run skips what it lists as done")
    video = parser.add_argument_group("videos (.mp4 .m4v .mov .mkv .webm .avi; needs faceprior[video])")
    video.add_argument("--frames", default=None, metavar="A:B",
                       help="restore only frames A to B-1 (the others are kept as they are)")
    video.add_argument("--preview", type=int, default=None, metavar="N",
                       help="instead of the video, write every N-th frame restored as a PNG, for a quick look")
    video.add_argument("--codec", default=None, help="video encoder (default: libx264; libvpx-vp9 for .webm)")
    video.add_argument("--crf", type=int, default=None, help="encoder quality, lower is better (default 18)")
    parser.set_defaults(run=run_restore)


def restorer_options(args: argparse.Namespace) -> dict:
    """FaceRestorer keyword arguments of a `faceprior restore` command line."""
    return dict(
        model=args.model, detector=args.detector, upscale=args.upscale, weight=args.weight,
        aligned=(args.template or "ffhq") if args.aligned else False, only_center_face=args.only_center_face,
        min_face=args.min_face, max_faces=args.max_faces, faces=args.faces, batch_size=args.batch_size, seed=args.seed,
        device=str(args.device), upsampler=args.bg_upsampler, bg_tile=args.bg_tile,
        face_masker="parsenet" if args.parse_mask else None, precision=args.precision,
        template=None if args.aligned else args.template, fidelity=args.fidelity, keep_tone=args.keep_tone,
        keep_white_balance=args.keep_white_balance, refine_landmarks=args.refine_landmarks, surroundings=args.surroundings, background=args.background)


def run_restore(args: argparse.Namespace) -> int:
    if args.engine == "ray":
        return run_restore_on_ray(args)
    args.output = Path(args.output)
    inputs, problems = find_inputs(args.inputs, args.output)
    for name, reason in problems:
        print(f"faceprior: {printable(name)}: {reason}", file=sys.stderr)
    if not inputs:
        raise CommandError("no input images or videos found")
    if args.preview is not None and args.preview < 1:
        raise CommandError(f"--preview must be >= 1, got {args.preview}")
    plans, conflicts = plan_outputs(inputs, args.output, ext=args.ext, save_faces=args.save_faces,
                                    save_compare=args.save_compare, save_report=args.report)
    for conflict in conflicts:
        print(f"faceprior: {conflict}", file=sys.stderr)
    if conflicts:
        raise CommandError(f"{len(conflicts)} output conflict(s): nothing was restored, no file was written")
    try:
        args.output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CommandError(f"cannot create the output folder {args.output} ({error.strerror or error})") from None
    restorer = FaceRestorer(**restorer_options(args))
    print(f"faceprior: model {restorer.choice.name} ({restorer.choice.reason}); {restorer.precision_note}",
          file=sys.stderr)
    record = writes_into_an_input_folder(args.inputs, args.output)
    videos = [plan for plan in plans if is_video_file(plan.item.path)]
    images = [plan for plan in plans if not is_video_file(plan.item.path)]
    summary = restore_files(
        restorer, images, args.output, skip_existing=args.skip_existing, overwrite=args.overwrite,
        save_faces=args.save_faces, save_compare=args.save_compare, save_report=args.report,
        max_pixels=args.max_pixels, record_outputs=record)
    if videos:
        if restorer.aligned:
            raise CommandError("--aligned takes aligned face images, not videos")
        summary.add(restore_videos(restorer, videos, args.output, skip_existing=args.skip_existing,
                                   overwrite=args.overwrite, save_report=args.report, frames=args.frames,
                                   preview=args.preview, codec=args.codec, crf=args.crf, record_outputs=record))
    print(format_summary(summary, problems), file=sys.stderr)
    return 1 if (summary.failures or problems) else 0


def run_restore_on_ray(args: argparse.Namespace) -> int:
    """--engine ray: one SOURCE folder (or URI) into OUTDIR, on Ray (faceprior.archive.ray_restore)."""
    from faceprior.archive.ray_restore import restore_with_ray

    if len(args.inputs) != 1:
        raise CommandError("--engine ray takes one SOURCE (a folder or a URI such as s3://bucket/photos)")
    refused = [name for name, given in (("--save-faces", args.save_faces), ("--save-compare", args.save_compare),
                                        ("--report", args.report), ("--skip-existing", args.skip_existing),
                                        ("--frames", args.frames), ("--preview", args.preview)) if given]
    if refused:
        raise CommandError(f"{', '.join(refused)}: not with --engine ray (the manifest records faces, weights and "
                           "timings, and a re-run skips what is done)")
    summary = restore_with_ray(args.inputs[0], str(args.output), restorer_options(args), actors=args.actors,
                               gpus_per_actor=args.gpus_per_actor, cpus_per_actor=args.cpus_per_actor,
                               batch_size=args.batch_size, address=args.address, manifest=args.manifest, ext=args.ext,
                               overwrite=args.overwrite, max_pixels=args.max_pixels)
    print(format_summary(summary), file=sys.stderr)
    return 1 if summary.failures else 0

"""The ``faceprior`` command line: one module per group of subcommands.

=========================  ================================================
module                     subcommands
=========================  ================================================
``faceprior.cli.restore``  restore
``faceprior.cli.serve``    serve
``faceprior.cli.models``   models, convert, export
``faceprior.cli.evaluate`` make-testset, evaluate, ablation
``faceprior.cli.train``    train, dry-run, sample, degrade, prepare-components
=========================  ================================================

Each subcommand is two functions in its module: ``add_<name>_command(subparsers)`` declares its
arguments and ``run_<name>(args) -> int`` does the work. To add one, write both and list the
``add_`` function in ``COMMANDS`` below. Library modules never import the CLI.

Exit status: 0 on success, 1 on failure, 2 for a malformed command line (argparse's convention),
130 when interrupted (Ctrl-C). A user error (any :class:`faceprior.errors.FacepriorError`) is one
line ``faceprior: error: ...`` on stderr; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from faceprior.cli.evaluate import add_ablation_command, add_evaluate_command, add_make_testset_command
from faceprior.cli.models import add_convert_command, add_export_command, add_models_command
from faceprior.cli.restore import add_restore_command
from faceprior.cli.serve import add_serve_command
from faceprior.cli.train import (
    add_degrade_command,
    add_dry_run_command,
    add_prepare_components_command,
    add_sample_command,
    add_train_command,
)
from faceprior.errors import FacepriorError, one_line
from faceprior.hardware import parse_device
from faceprior.paths import remove_unfinished_temporaries
from faceprior.version import __version__

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    add_restore_command,
    add_serve_command,
    add_models_command,
    add_convert_command,
    add_export_command,
    add_make_testset_command,
    add_evaluate_command,
    add_ablation_command,
    add_train_command,
    add_dry_run_command,
    add_sample_command,
    add_degrade_command,
    add_prepare_components_command,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="faceprior", description="Blind face restoration with GFP-GAN.")
    parser.add_argument("--version", action="version", version=f"faceprior {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``faceprior`` script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "device", None) is not None:
            args.device = parse_device(args.device)  # one line for a device this machine does not have
        return int(args.run(args) or 0)
    except FacepriorError as error:
        print(f"faceprior: error: {one_line(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        remove_unfinished_temporaries()  # a Ctrl-C between creating a temporary file and its try
        print("faceprior: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

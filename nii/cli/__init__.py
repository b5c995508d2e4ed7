"""The ``nii`` command line.

Each sub-command lives in its own module of this package exposing ``register(subparsers)``;
``register`` only declares arguments (no heavy imports), and the handler it sets imports what it
needs when the command runs. Progress bars and tables go to stderr/stdout through :mod:`rich`;
``--json`` output is plain JSON on stdout.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from .._version import __version__
from ..errors import NiiError

__all__ = ["main", "COMMAND_MODULES"]

#: Sub-command modules, in the order they appear in ``nii --help``.
COMMAND_MODULES = (
    "info",
    "scan",
    "convert",
    "simulate",
    "physics",
    "calibrate",
    "bench",
    "dataset",
    "train",
    "quantize",
    "optimize",
    "rescorer",
    "evaluate",
    "review",
    "watch",
    "serve",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nii",
        description="Wildlife-contraband detection for customs X-ray scanners.",
    )
    parser.add_argument("--version", action="version", version=f"nii {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument(
        "--malloc", choices=("tuned", "default"), default="tuned",
        help="tuned (default): glibc's malloc keeps scan-sized arrays on its heap between scans instead of "
        "mapping fresh pages for each (a container scan 0.1-0.5 s faster; the process keeps its peak memory); "
        "default: leave malloc as it is",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"nii.cli.{name}").register(sub)
    return parser


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    from rich.logging import RichHandler

    handler = RichHandler(console=_stderr_console(), show_path=False, show_time=False)
    logging.basicConfig(level=level, handlers=[handler], format="%(message)s", force=True)


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nii`` console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    _setup_logging(args.verbose)
    if args.malloc == "tuned":
        from .._malloc import tune_allocator

        tune_allocator()
    try:
        return int(args.handler(args) or 0)
    except NiiError as exc:
        from rich.text import Text

        # one unbroken line per message (no wrapping at the console width: logs and scripts grep
        # it), and the message taken literally (a path like "scan[1].h5" is not markup)
        _stderr_console().print(Text.assemble(("error:", "bold red"), " ", str(exc)), highlight=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        _stderr_console().print("[yellow]interrupted[/]")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

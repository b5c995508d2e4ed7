"""``nii convert INPUT -o OUT.h5``: any supported format to nii HDF5 (schema nii-scan/1)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert a scan of any supported format to nii HDF5")
    p.add_argument("input", metavar="INPUT", help="scan file")
    p.add_argument("-o", "--output", required=True, metavar="OUT.h5", help="output nii HDF5 file")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.add_argument("--compression", choices=("gzip", "lzf", "none"), default="gzip")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import FileAccessError
    from ..io import read
    from ..io.hdf5 import write
    from ._common import stdout_console

    out = Path(args.output)
    if out.exists() and not args.force:
        raise FileAccessError("exists already (use --force to replace it)", path=out)
    scan = read(args.input)
    write(scan, out, compression=None if args.compression == "none" else args.compression)
    stdout_console().print(
        f"wrote {out} ({scan.source.format if scan.source else '?'} → nii-hdf5, shape {'×'.join(map(str, scan.shape))})",
        highlight=False,
    )
    return 0

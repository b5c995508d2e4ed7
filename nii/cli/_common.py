"""Helpers shared by CLI sub-commands: console objects, input expansion, JSON output."""

from __future__ import annotations

import glob
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["nonneg_int", "pos_int", "stdout_console", "stderr_console", "expand_inputs", "emit_json", "progress"]


def stdout_console():
    from rich.console import Console

    return Console()


def stderr_console():
    from rich.console import Console

    # messages stay one line each (paths are not broken at the console width)
    return Console(stderr=True, soft_wrap=True)


def expand_inputs(inputs: Sequence[str], *, recursive: bool = True) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files, folders and glob patterns into a sorted list of files.

    Returns ``(files, problems)`` where ``problems`` lists ``(input, reason)`` for inputs that
    matched nothing; a batch goes on and reports them at the end.
    """
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            files.append(p)

    for item in inputs:
        p = Path(item)
        if p.is_dir():
            pattern = "**/*" if recursive else "*"
            found = sorted(q for q in p.glob(pattern) if q.is_file() and not _ignored(q))
            companions = _raw_companions(found)
            found = [q for q in found if q.resolve() not in companions]
            if not found:
                problems.append((item, "folder holds no files"))
            for q in found:
                add(q)
        elif p.exists():
            add(p)
        elif glob.has_magic(item):
            found = sorted(Path(q) for q in glob.glob(item, recursive=True) if Path(q).is_file())
            if not found:
                problems.append((item, "pattern matched no file"))
            for q in found:
                add(q)
        else:
            problems.append((item, "no such file or folder"))
    return files, problems


_IGNORED_SUFFIXES = {".md", ".txt", ".yaml", ".yml", ".toml", ".py", ".part", ".sha256", ".csv"}
_IGNORED_NAMES = {"SHA256SUMS", "manifest.json", "annotations.coco.json", "coco.json"}
_IGNORED_DIRS = {"thumbs", "labels", "__pycache__"}


def _ignored(p: Path) -> bool:
    """Documentation and label files that live beside scans in a folder are not scans.

    This only prunes obvious companions in folder walks; whether a file *is* a scan is decided by
    its content when it is read, and raw-binary companions are handled by :func:`_raw_companions`.
    """
    if p.name.startswith(".") or p.name in _IGNORED_NAMES or p.suffix.lower() in _IGNORED_SUFFIXES:
        return True
    return any(part in _IGNORED_DIRS for part in p.parts)


def _raw_companions(files: list[Path]) -> set[Path]:
    """Files that belong to a raw scan but are not its entry point: sidecars and reference files.

    Each raw scan is then read once, through its data file. Sidecars are recognised by content
    (a ``nii-raw/1`` JSON document), never by name alone.
    """
    from ..errors import NiiError
    from ..io import raw as raw_reader

    skip: set[Path] = set()
    for f in files:
        try:
            with open(f, "rb") as fh:
                head = fh.read(64)
        except OSError:
            continue
        if not head.lstrip().startswith(b"{"):
            continue
        try:
            data, sidecar, obj = raw_reader.read_sidecar(f)
        except (NiiError, ValueError, OSError):
            continue
        skip.add(sidecar.resolve())
        for key in ("dark", "air", "air_end"):
            spec = obj.get(key)
            if isinstance(spec, dict) and "file" in spec:
                skip.add((sidecar.parent / str(spec["file"])).resolve())
        if not data.exists():  # sidecar without its data: let the read report it
            skip.discard(sidecar.resolve())
    return skip


def emit_json(obj: Any, *, stream=None) -> None:
    """Write one JSON document on one line to stdout (or ``stream``)."""
    stream = stream or sys.stdout
    stream.write(json.dumps(obj, default=_default, sort_keys=False) + "\n")
    stream.flush()


def _default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)


def progress(disable: bool = False):
    """A rich progress bar on stderr (disabled for ``--json`` or when stderr is not a terminal)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr_console(),
        disable=disable,
        transient=False,
    )


def iter_with_progress(items: Iterable[Any], total: int, description: str, *, disable: bool):
    with progress(disable) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)


def nonneg_int(text: str) -> int:
    """``argparse`` type: an integer >= 0."""
    import argparse

    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return v


def pos_int(text: str) -> int:
    """``argparse`` type: an integer >= 1."""
    import argparse

    v = nonneg_int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v

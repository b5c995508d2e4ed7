"""Helpers shared by CLI sub-commands: console objects, input expansion, JSON output."""

from __future__ import annotations

import glob
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["stdout_console", "stderr_console", "expand_inputs", "emit_json", "progress"]


def stdout_console():
    from rich.console import Console

    return Console()


def stderr_console():
    from rich.console import Console

    return Console(stderr=True)


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


_IGNORED_SUFFIXES = {".md", ".txt", ".yaml", ".yml", ".toml", ".py", ".part", ".sha256"}
_IGNORED_NAMES = {"SHA256SUMS", "manifest.json", "annotations.coco.json"}


def _ignored(p: Path) -> bool:
    """Companion files inside scan folders (docs, labels, thumbnails, manifests) are not scans.

    This filters by name only to skip obvious non-scans in folder walks; whether a file *is* a
    scan is decided by content when it is read. Raw-binary sidecars (``*.json`` next to a data
    file of the same stem) are skipped so that each raw scan is read once, through its data file.
    """
    if p.name.startswith(".") or p.name in _IGNORED_NAMES or p.suffix.lower() in _IGNORED_SUFFIXES:
        return True
    if any(part in {"thumbs", "labels", "__pycache__"} for part in p.parts):
        return True
    if p.suffix.lower() == ".json":
        stem = p.name[: -len(".json")]
        return any(q != p and (q.name == stem or q.stem == Path(stem).stem) for q in p.parent.glob(Path(stem).stem + "*"))
    return False


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

"""Atomic output: write to a temporary name in the target folder, then rename.

A crash or an exception never leaves a half-written file under the final name, and an existing
file of that name is replaced only once the new one is complete.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import FileAccessError

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text"]


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """The process umask, read once (reading it means setting it, so do that only once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    Parameters
    ----------
    target : path
        Final file name.
    overwrite : bool
        If False and ``target`` exists, raise :class:`FileAccessError` before writing anything.
    """
    target = Path(target)
    parent = target.parent if str(target.parent) else Path(".")
    if not overwrite and target.exists():
        raise FileAccessError("exists already and overwrite=False", path=target)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=parent)
    except OSError as exc:
        raise FileAccessError(f"cannot create output folder or file: {exc.strerror or exc}", path=target) from exc
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; outputs get the mode a plain open() would give (0666 & ~umask), so that
    # operators and services running as other users can read results.
    try:
        os.chmod(tmp_path, 0o666 & ~_umask())
    except OSError:
        pass
    try:
        yield tmp_path
        try:
            with open(tmp_path, "rb+") as fh:
                os.fsync(fh.fileno())
        except OSError:
            pass
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a new empty folder beside ``target``; rename it to ``target`` on success, remove it on failure.

    ``target`` must not exist (:class:`FileAccessError` otherwise, before anything is created): a
    folder that was assembled (a model folder) appears whole or not at all, and nothing that was
    there is replaced.
    """
    import shutil

    target = Path(target)
    if target.exists():
        raise FileAccessError("exists already", path=target)
    parent = target.parent if str(target.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=parent))
    except OSError as exc:
        raise FileAccessError(f"cannot create a folder beside it: {exc.strerror or exc}", path=target) from exc
    try:
        yield work
        os.replace(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically and return the final path."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(target: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``target`` atomically and return the final path."""
    return atomic_write_bytes(target, text.encode("utf-8"))

"""Process-wide tuning of glibc's ``malloc`` for scan-sized arrays (:func:`tune_allocator`).

A container scan makes and frees arrays of 16-130 MB at every step (counts, attenuation, maps,
the detector's encoding and tiles). glibc serves every block above its mmap threshold (at most
32 MB, by its own dynamic rule) with a fresh ``mmap`` and gives it back with ``munmap`` when it
is freed, so the next scan touches new pages again: the kernel zero-fills them one 4 KiB page
fault at a time. On the 2-core runners that was 90-100 ms of a container's 0.76-0.82 s in
``nii bench detect`` (encode 103-109 -> 68-72 ms, evidence and anomaly cue 82-86 -> 65-69 ms)
and up to half of ``Pipeline.process`` on a container file (0.53-1.02 s -> 0.46-0.50 s, and
steady), measured 2026-11-27 (detectors/README "Latency").

:func:`tune_allocator` raises the mmap threshold and the trim threshold (``mallopt``) so that
such blocks come from malloc's heap and freed memory stays there for the next scan. The cost is
resident memory: the process keeps the high-water mark of its heap (about the peak of one scan,
which it reaches on every container anyway) instead of returning it between scans.

It changes the whole process, so nii never calls it on import or from library code: the ``nii``
command calls it for its own process (``nii --malloc default`` opts out), and nii's Dask workers
do when their client asked for it. An application embedding nii decides for itself.
"""

from __future__ import annotations

import ctypes
import logging
import sys
import threading

__all__ = ["allocator_state", "tune_allocator"]

logger = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

#: what :func:`tune_allocator` set in this process (None: nothing)
_state: dict[str, int] | None = None
_lock = threading.Lock()


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        # the symbols already loaded into this process (libc among them): no library search, which
        # would start ldconfig in a subprocess
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):  # musl, or no libc found: not glibc
        return None
    return libc


def tune_allocator(*, mmap_threshold_mb: int = 1024, trim_threshold_mb: int = 1024) -> bool:
    """Let glibc's ``malloc`` serve scan-sized arrays from its heap and keep freed memory.

    Parameters
    ----------
    mmap_threshold_mb : int
        Blocks at least this large still get their own ``mmap`` (default 1024 MB: none of a
        2000 x 8000 container's arrays).
    trim_threshold_mb : int
        Free memory at the top of the heap above this is returned to the system.

    Returns
    -------
    bool
        True when the settings are in effect (glibc), False where there is nothing to tune
        (macOS, Windows, musl) or glibc refused them. Calling it again with the same values
        does nothing more.
    """
    global _state
    from .errors import InvalidParameterError

    for name, v in (("mmap_threshold_mb", mmap_threshold_mb), ("trim_threshold_mb", trim_threshold_mb)):
        if not isinstance(v, int) or isinstance(v, bool) or not (1 <= v <= 2047):
            raise InvalidParameterError(f"{name} must be an int in [1, 2047] (MB), got {v!r}")
    want = {"mmap_threshold_mb": mmap_threshold_mb, "trim_threshold_mb": trim_threshold_mb}
    with _lock:
        if _state == want:
            return True
        libc = _glibc()
        if libc is None:
            logger.debug("malloc tuning: not glibc, nothing to do")
            return False
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold_mb << 20)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold_mb << 20)
        )
        if not ok:
            logger.warning("glibc refused the malloc settings %s; its defaults stay", want)
            return False
        _state = want
        logger.debug("malloc tuned: %s", want)
        return True


def allocator_state() -> str:
    """How this process's ``malloc`` is set, for benchmark records: ``"glibc tuned (...)"`` or
    ``"default"``."""
    s = _state
    if s is None:
        return "default"
    return f"glibc tuned (mmap threshold {s['mmap_threshold_mb']} MB, trim threshold {s['trim_threshold_mb']} MB)"

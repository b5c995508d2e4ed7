"""Scanner-station integration: the hot folder (``nii watch``) and its SQLite job journal."""

from __future__ import annotations

from .journal import Job, Journal
from .watcher import Watcher, WatchStats, is_partial_name

__all__ = ["Job", "Journal", "WatchStats", "Watcher", "is_partial_name"]

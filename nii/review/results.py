"""Read-only view of a results folder written by ``nii scan``, and the viewer layers.

Only files that a scan report (``*.json``, schema ``nii-scan-report/1``) names are ever served,
each resolved with :func:`safe_join` so that no request can reach outside the results folder
(no ``..``, no absolute names, no symbolic link that leads out). Files are opened read-only.

Layers (rendered from the results HDF5 ``/calibrated`` maps, cached per file version):

==========  =========================================================================
``color``   operator pseudo-colour (``/calibrated/color``)
``high``    high-energy attenuation, grey (display law of :mod:`nii.materials`)
``low``     low-energy attenuation, grey (the single plane for single-energy scans)
``organic`` pseudo-colour of organic pixels only; the rest faint grey
``metal``   pseudo-colour of metal and impenetrable pixels only; the rest faint grey
``zeff``    effective atomic number, colour scale 5 (blue) .. 30 (red); air white
==========  =========================================================================
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FileAccessError, InvalidParameterError, NiiError

__all__ = ["LAYERS", "ResultsIndex", "ScanEntry", "safe_join", "render_layer", "layer_png", "thumbnail_png"]

logger = logging.getLogger(__name__)

LAYERS = ("color", "high", "low", "organic", "metal", "zeff")
ZEFF_RANGE = (5.0, 30.0)
_MAX_DEPTH = 4
_MAX_REPORT_BYTES = 16 * 1024 * 1024


def safe_join(root: Path, name: str) -> Path:
    """Resolve ``name`` inside ``root``; raise :class:`FileAccessError` if it would leave ``root``.

    ``name`` must be relative, without ``..`` parts; the resolved path (symbolic links followed)
    must lie inside the resolved ``root``.
    """
    root = Path(root).resolve()
    if not isinstance(name, str) or not name or "\x00" in name:
        raise FileAccessError(f"invalid file name {name!r}", path=root)
    rel = Path(name)
    if rel.is_absolute() or rel.drive or not rel.parts or any(p in ("..", ".") for p in rel.parts) or name.startswith(("/", "\\")):
        raise FileAccessError(f"file name {name!r} leaves the results folder", path=root)
    full = (root / rel).resolve()
    if root not in full.parents:
        raise FileAccessError(f"file name {name!r} resolves outside the results folder", path=root)
    return full


@dataclass(frozen=True)
class ScanEntry:
    """One scan of the results folder: its report and the folder holding it (relative to root)."""

    key: str
    report: dict[str, Any] = field(repr=False)
    folder: str
    report_name: str
    report_sha256: str
    mtime: float

    def summary(self) -> dict[str, Any]:
        r = self.report
        s = r.get("alarm_summary", {})
        return {
            "key": self.key,
            "scan_id": r.get("scan_id"),
            "alarm": bool(r.get("alarm")),
            "n_detections": s.get("n_detections", len(r.get("detections", []))),
            "classes": s.get("classes", []),
            "max_confidence": s.get("max_confidence"),
            "acquired_at": r.get("acquired_at"),
            "processed_at": r.get("processed_at"),
            "profile": (r.get("scanner") or {}).get("profile"),
            "shape": (r.get("scanner") or {}).get("shape"),
            "has_h5": "h5" in (r.get("outputs") or {}),
        }


class ResultsIndex:
    """Index of the scan reports under ``root`` (re-scanned when asked, cheap when unchanged)."""

    def __init__(self, root: str | os.PathLike) -> None:
        root_path = Path(root)
        if not root_path.is_dir():
            raise FileAccessError("results folder does not exist or is not a folder", path=root_path)
        self.root = root_path.resolve()
        self._lock = threading.Lock()
        self._entries: dict[str, ScanEntry] = {}
        self._seen: dict[str, tuple[float, int]] = {}
        self.refresh()

    def _walk(self):
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            depth = len(Path(dirpath).relative_to(self.root).parts)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and depth < _MAX_DEPTH)
            for fn in sorted(filenames):
                if fn.endswith(".json") and not fn.startswith("."):
                    yield Path(dirpath) / fn

    def refresh(self) -> None:
        """Re-read new or changed reports; forget removed ones."""
        import hashlib  # noqa: PLC0415

        from ..schemas import SCAN_REPORT  # noqa: PLC0415

        with self._lock:
            entries: dict[str, ScanEntry] = {}
            old = {(e.folder, e.report_name): e for e in self._entries.values()}
            for path in self._walk():
                try:
                    st = path.stat()
                    if not path.is_file() or st.st_size > _MAX_REPORT_BYTES:
                        continue
                    rel = path.relative_to(self.root)
                    folder = rel.parent.as_posix() if rel.parent != Path(".") else ""
                    prev = old.get((folder, rel.name))
                    if prev is not None and self._seen.get(str(rel)) == (st.st_mtime, st.st_size):
                        entry = prev
                    else:
                        data = path.read_bytes()
                        doc = json.loads(data)
                        if not isinstance(doc, dict) or doc.get("schema") != SCAN_REPORT:
                            continue
                        key = (folder.replace("/", "~") + "~" if folder else "") + rel.stem
                        entry = ScanEntry(key, doc, folder, rel.name, hashlib.sha256(data).hexdigest(), st.st_mtime)
                        self._seen[str(rel)] = (st.st_mtime, st.st_size)
                except (OSError, ValueError) as exc:
                    logger.warning("skipping %s: %s", path, exc)
                    continue
                entries[entry.key] = entry
            self._entries = entries

    def scans(self) -> list[ScanEntry]:
        return list(self._entries.values())

    def get(self, key: str) -> ScanEntry:
        try:
            return self._entries[key]
        except KeyError:
            raise FileAccessError(f"no scan {key!r} in the results folder", path=self.root) from None

    def file(self, entry: ScanEntry, kind: str) -> Path:
        """Path of the output ``kind`` (png, h5, tdr, dx) of a scan, checked to lie inside root."""
        name = (entry.report.get("outputs") or {}).get(kind)
        if not name:
            raise FileAccessError(f"scan {entry.key!r} has no {kind} output", path=self.root)
        p = safe_join(self.root, (entry.folder + "/" if entry.folder else "") + name)
        if not p.is_file():
            raise FileAccessError(f"{kind} output of scan {entry.key!r} is missing", path=p)
        return p


def _grey(l: np.ndarray) -> np.ndarray:
    from ..materials import DISPLAY_GAMMA  # noqa: PLC0415

    b = np.exp(-DISPLAY_GAMMA * np.maximum(np.nan_to_num(l, nan=0.0), 0.0))
    return np.clip(b * 255.0 + 0.5, 0, 255).astype(np.uint8)


def render_layer(maps: dict[str, np.ndarray | None], layer: str) -> np.ndarray:
    """Render one viewer layer (RGB uint8, (H, W, 3)) from calibrated maps.

    ``maps`` holds ``attenuation`` (E, H, W) and optionally ``color``, ``material``, ``zeff``.
    """
    from ..materials import MaterialClass, render_pseudocolor  # noqa: PLC0415

    if layer not in LAYERS:
        raise InvalidParameterError(f"layer must be one of {LAYERS}, got {layer!r}")
    att = maps["attenuation"]
    l_high, l_low = att[-1], att[0]
    material = maps.get("material")
    color = maps.get("color")
    if color is None:
        color = render_pseudocolor(l_high, material) if material is not None else np.repeat(_grey(l_high)[..., None], 3, 2)
    if material is not None and layer in ("color", "organic", "metal"):
        # the operator picture: isolated air speckle shown as air, in every layer that shows colour
        from ..materials import despeckle_display  # noqa: PLC0415

        color = despeckle_display(np.asarray(color, dtype=np.uint8), material)
    if layer == "color":
        return np.ascontiguousarray(color)
    if layer in ("high", "low"):
        g = _grey(l_high if layer == "high" else l_low)
        return np.repeat(g[..., None], 3, axis=2)
    if layer in ("organic", "metal"):
        if material is None:
            raise InvalidParameterError(f"layer {layer!r} needs a material map, which this scan lacks")
        keep = material == MaterialClass.ORGANIC if layer == "organic" else material >= MaterialClass.METAL
        g = _grey(l_high).astype(np.float32)
        faint = (255.0 - (255.0 - g) * 0.25).astype(np.uint8)
        out = np.repeat(faint[..., None], 3, axis=2)
        out[keep] = color[keep]
        return out
    # zeff
    import cv2  # noqa: PLC0415

    z = maps.get("zeff")
    if z is None:
        raise InvalidParameterError("layer 'zeff' needs a Zeff map, which this scan lacks")
    lo, hi = ZEFF_RANGE
    u = np.clip((np.nan_to_num(z, nan=lo) - lo) / (hi - lo), 0, 1)
    bgr = cv2.applyColorMap(np.round(u * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    out = np.ascontiguousarray(bgr[..., ::-1])
    air = ~np.isfinite(z)
    if material is not None:
        air |= material == MaterialClass.AIR
    out[air] = 255
    return out


def read_maps(h5_path: Path) -> dict[str, np.ndarray | None]:
    """Read ``/calibrated`` maps of a results HDF5 (read-only)."""
    import h5py  # noqa: PLC0415

    from ..errors import CorruptFileError  # noqa: PLC0415

    try:
        with h5py.File(h5_path, "r") as f:
            g = f["calibrated"]
            return {k: (g[k][()] if k in g else None) for k in ("attenuation", "color", "material", "zeff")}
    except (OSError, KeyError) as exc:
        raise CorruptFileError(f"results HDF5 has no readable /calibrated maps ({exc})", path=h5_path) from exc


def _png(rgb: np.ndarray) -> bytes:
    import cv2  # noqa: PLC0415

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:  # pragma: no cover
        raise NiiError("PNG encoding failed")
    return buf.tobytes()


@functools.lru_cache(maxsize=48)
def _layer_png_cached(path: str, mtime_ns: int, size: int, layer: str) -> bytes:
    return _png(render_layer(read_maps(Path(path)), layer))


def layer_png(h5_path: Path, layer: str) -> bytes:
    """PNG bytes of a layer at full resolution (cached per file version)."""
    if layer not in LAYERS:
        raise InvalidParameterError(f"layer must be one of {LAYERS}, got {layer!r}")
    st = h5_path.stat()
    return _layer_png_cached(str(h5_path), st.st_mtime_ns, st.st_size, layer)


@functools.lru_cache(maxsize=512)
def _thumb_cached(path: str, mtime_ns: int, size: int, width: int) -> bytes:
    import cv2  # noqa: PLC0415

    p = Path(path)
    if p.suffix == ".h5":
        rgb = render_layer(read_maps(p), "color")
    else:
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise NiiError(f"{path}: cannot decode image")
        rgb = bgr[..., ::-1]
    h, w = rgb.shape[:2]
    if w > width:
        rgb = cv2.resize(np.ascontiguousarray(rgb), (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    return _png(rgb)


def thumbnail_png(path: Path, *, width: int = 320) -> bytes:
    """Small PNG of a scan (from its results HDF5 or annotated PNG)."""
    st = path.stat()
    return _thumb_cached(str(path), st.st_mtime_ns, st.st_size, width)

"""Rendered images: 8-bit PNG/JPEG screenshots (greyscale or operator pseudo-colour), 16-bit PNG.

What is recovered (spec in ``docs/formats.md``):

* **8-bit greyscale** — a transmission display, ``g = 255 exp(-L)``: one energy plane
  ``L = -ln(max(g, 0.5) / 255)``; no material information. Returns a :class:`Scan` with
  ``rendered=True``.
* **8-bit colour** — the operator pseudo-colour of :func:`nii.materials.render_pseudocolor`:
  white = air, black = impenetrable, otherwise the class whose hue
  (:data:`nii.materials.CLASS_HUE_RGB`) best explains the pixel as ``hue * b`` (least squares over
  the three channels, robust to JPEG noise) and ``L_high`` from the brightness ``b`` by
  :func:`nii.materials.attenuation_from_brightness`. Fills ``attenuation`` (one plane, "high"),
  ``material``, a class-representative ``zeff`` (:data:`nii.encoding.CLASS_ZEFF`), ``valid`` and
  ``color`` (the image itself). An RGB image whose channels agree is read as greyscale.
* **16-bit greyscale PNG** — detector counts of one energy plane (a common export): a
  :class:`RawScan` without dark/air references.

Orientation: image rows are detector channels (H), columns are scan lines (W). A screenshot's
pixel pitch is unknown: :data:`DEFAULT_PITCH_MM` is assumed and ``metadata["pitch_assumed"]`` set.
Declared dimensions (PNG ``IHDR``, JPEG ``SOFn``) are checked against ``max_pixels`` before
decoding, and the file must end properly (PNG ``IEND``, JPEG ``EOI``) so that a truncated file is
an error rather than a silently grey-filled image.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

from .._atomic import atomic_write_bytes
from ..containers import EnergyChannel, RawScan, Scan
from ..encoding import CLASS_ZEFF
from ..errors import CorruptFileError, FileAccessError, InvalidDataError, InvalidParameterError, UnsupportedFormatError
from ..materials import CLASS_HUE_RGB, MaterialClass, attenuation_from_brightness, render_pseudocolor
from ._common import JPEG_MAGIC, PNG_MAGIC, check_pixel_limit

__all__ = [
    "FORMAT",
    "DEFAULT_PITCH_MM",
    "sniff",
    "read",
    "write",
    "image_dimensions",
    "decode_greyscale",
    "decode_pseudocolor",
    "is_pseudocolor",
]

FORMAT = "rendered"
#: Pixel pitch assumed for a screenshot (mm per pixel, detector and line): unknown in general.
DEFAULT_PITCH_MM = (1.0, 1.0)
#: Half a grey level: the darkest brightness an 8-bit display can distinguish from black.
_B_FLOOR = 0.5 / 255.0
_OBJECT_CLASSES = (MaterialClass.ORGANIC, MaterialClass.MIXED, MaterialClass.METAL)
_CHUNK_PIXELS = 1 << 20
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def sniff(head: bytes, path: Path) -> bool:
    """PNG or JPEG signature."""
    return head.startswith(PNG_MAGIC) or head.startswith(JPEG_MAGIC)


# --------------------------------------------------------------------------------------------
# header parsing (no decoding)


def _png_dims(data: bytes, path: Path) -> tuple[int, int, int, int]:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise CorruptFileError("PNG: missing or truncated IHDR header", path=path)
    (length,) = struct.unpack(">I", data[8:12])
    if length != 13 or struct.unpack(">I", data[29:33])[0] != zlib.crc32(data[12:29]):
        raise CorruptFileError("PNG: IHDR header is damaged (length or CRC mismatch)", path=path)
    width, height, depth, ctype = struct.unpack(">IIBB", data[16:26])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(ctype)
    if channels is None or depth not in (1, 2, 4, 8, 16):
        raise CorruptFileError(f"PNG: invalid colour type {ctype} / bit depth {depth}", path=path)
    if width == 0 or height == 0:
        raise CorruptFileError(f"PNG: empty image {width}x{height}", path=path)
    return height, width, channels, depth


def _png_check_chunks(data: bytes, path: Path) -> None:
    """Walk the PNG chunks: each must fit in the file and match its CRC, and IEND must end it."""
    pos = len(PNG_MAGIC)
    while True:
        if pos + 12 > len(data):
            raise CorruptFileError(f"PNG: truncated at byte {pos} (no IEND chunk)", path=path)
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length
        if end > len(data):
            raise CorruptFileError(
                f"PNG: chunk {kind!r} at byte {pos} declares {length} bytes, past the end of the file (truncated?)",
                path=path,
            )
        (crc,) = struct.unpack(">I", data[end - 4 : end])
        if crc != zlib.crc32(data[pos + 4 : end - 4]):
            raise CorruptFileError(f"PNG: chunk {kind!r} at byte {pos} is damaged (CRC mismatch)", path=path)
        if kind == b"IEND":
            return
        pos = end


def _jpeg_dims(data: bytes, path: Path) -> tuple[int, int, int, int, int]:
    """``(height, width, components, precision, offset_of_first_SOS)`` from the JPEG markers."""
    pos = 2
    dims = None
    n = len(data)
    while pos < n:
        if data[pos] != 0xFF:
            raise CorruptFileError(f"JPEG: expected a marker at byte {pos}", path=path)
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos >= n:
            break
        marker = data[pos]
        pos += 1
        if marker in (0x01,) or 0xD0 <= marker <= 0xD7:
            continue
        if marker == 0xD9:
            break
        if pos + 2 > n:
            break
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if length < 2:
            raise CorruptFileError(f"JPEG: invalid segment length {length} at byte {pos}", path=path)
        if marker in _SOF_MARKERS:
            if pos + 8 > n:
                break
            precision, height, width, comps = struct.unpack(">BHHB", data[pos + 2 : pos + 8])
            if height == 0 or width == 0:
                raise CorruptFileError(f"JPEG: image dimensions {width}x{height} not declared in SOF", path=path)
            dims = (height, width, comps, precision)
        if marker == 0xDA:
            if dims is None:
                raise CorruptFileError("JPEG: scan data before any SOF header", path=path)
            return (*dims, pos)
        pos += length
    raise CorruptFileError("JPEG: truncated before the image data (no SOF/SOS found)", path=path)


def image_dimensions(data: bytes, path: Path) -> tuple[str, int, int, int, int]:
    """``(container, height, width, channels, bit_depth)`` declared by a PNG/JPEG header."""
    if data.startswith(PNG_MAGIC):
        return ("png", *_png_dims(data, path))
    if data.startswith(JPEG_MAGIC):
        h, w, c, p, _ = _jpeg_dims(data, path)
        return ("jpeg", h, w, c, p)
    raise UnsupportedFormatError("not a PNG or JPEG file", path=path)


# --------------------------------------------------------------------------------------------
# inversion of the renderings (pure array functions)


def decode_greyscale(grey: np.ndarray) -> np.ndarray:
    """Greyscale transmission display ``(H, W)`` uint8 -> ``L = -ln(max(g, 0.5) / 255)`` float32.

    Examples
    --------
    >>> [round(float(v), 3) for v in decode_greyscale(np.array([[255, 0]], np.uint8))[0]]
    [0.0, 6.234]
    """
    g = np.asarray(grey)
    if g.dtype != np.uint8 or g.ndim != 2:
        raise InvalidParameterError(f"grey must be (H, W) uint8, got {g.shape} {g.dtype}")
    return np.log(np.float32(255.0) / np.maximum(g.astype(np.float32), np.float32(0.5))).astype(np.float32)


def is_pseudocolor(rgb: np.ndarray, *, tolerance: int = 16, fraction: float = 1e-3) -> bool:
    """True when more than ``fraction`` of the pixels have channel spread above ``tolerance``."""
    rgb = np.asarray(rgb)
    spread = rgb.max(axis=-1).astype(np.int16) - rgb.min(axis=-1).astype(np.int16)
    return bool(np.count_nonzero(spread > tolerance) > fraction * spread.size)


def decode_pseudocolor(rgb: np.ndarray, *, lossy: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Invert :func:`nii.materials.render_pseudocolor`: ``(L_high, material)`` from an RGB image.

    Parameters
    ----------
    rgb : ndarray (H, W, 3) uint8
        Pseudo-colour rendering, RGB order.
    lossy : bool
        The image went through a lossy codec (JPEG): white and black are recognised within a
        tolerance instead of exactly.

    Returns
    -------
    l_high : ndarray (H, W) float32
        High-energy attenuation (0 for air; the 8-bit maximum ``-ln(0.5/255)/DISPLAY_GAMMA`` for
        impenetrable pixels).
    material : ndarray (H, W) uint8
        :class:`~nii.materials.MaterialClass` codes.
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise InvalidParameterError(f"rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    l_high = np.empty(rgb.shape[:2], dtype=np.float32)
    material = np.empty(rgb.shape[:2], dtype=np.uint8)
    step = max(1, _CHUNK_PIXELS // max(rgb.shape[1], 1))  # bound the float temporaries
    for r0 in range(0, rgb.shape[0], step):
        l_high[r0 : r0 + step], material[r0 : r0 + step] = _decode_block(rgb[r0 : r0 + step], lossy)
    return l_high, material


def _decode_block(rgb: np.ndarray, lossy: bool) -> tuple[np.ndarray, np.ndarray]:
    x = rgb.astype(np.float32)
    hues = CLASS_HUE_RGB[list(_OBJECT_CLASSES)].astype(np.float32)  # (3 classes, 3 channels)
    # least-squares brightness per class and the residual of that fit
    proj = x @ hues.T  # (H, W, 3 classes)
    norm2 = np.einsum("ij,ij->i", hues, hues)
    b = np.clip(proj / norm2, 0.0, 1.0)
    resid = np.einsum("hwc,hwc->hw", x, x)[..., None] - 2.0 * b * proj + b * b * norm2
    best = np.argmin(resid, axis=-1)
    material = np.asarray(_OBJECT_CLASSES, dtype=np.uint8)[best]
    bright = np.take_along_axis(b, best[..., None], axis=-1)[..., 0]
    white_min, black_max = (232, 4) if lossy else (255, 0)
    air = x.min(axis=-1) >= white_min
    black = x.max(axis=-1) <= black_max
    material[air] = MaterialClass.AIR
    material[black] = MaterialClass.IMPENETRABLE
    l_high = attenuation_from_brightness(np.maximum(bright, np.float32(_B_FLOOR)))
    l_high[air] = 0.0
    l_high[black] = attenuation_from_brightness(np.float32(_B_FLOOR))
    return l_high.astype(np.float32), material


# --------------------------------------------------------------------------------------------
# reader


def _load(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FileAccessError(f"cannot read: {exc.strerror or exc}", path=path) from exc


def _decode(data: bytes, path: Path, container: str) -> np.ndarray:
    import cv2

    if container == "png":
        _png_check_chunks(data, path)
    if container == "jpeg":
        sos = _jpeg_dims(data, path)[4]
        if data.rfind(b"\xff\xd9") <= sos:
            raise CorruptFileError("JPEG: truncated (no EOI marker after the image data)", path=path)
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise CorruptFileError(f"{container.upper()}: the decoder rejected the image data (corrupt)", path=path)
    return img


def read(path: Path, *, max_pixels: int) -> RawScan | Scan:
    """Read an 8-bit rendering (-> :class:`Scan`) or a 16-bit greyscale PNG (-> :class:`RawScan`)."""
    path = Path(path)
    data = _load(path)
    container, h, w, channels, depth = image_dimensions(data, path)
    check_pixel_limit((h, w, channels), max_pixels, path, f"{container.upper()} image")
    img = _decode(data, path, container)
    if img.shape[:2] != (h, w):
        raise CorruptFileError(f"decoded size {img.shape[:2]} differs from the declared {(h, w)}", path=path)
    meta = {"container": container, "lossy": container == "jpeg", "pitch_assumed": True}
    common = dict(pixel_pitch_mm=DEFAULT_PITCH_MM, scan_id=path.stem)
    if img.dtype == np.uint16:
        if img.ndim != 2:
            raise UnsupportedFormatError(
                "16-bit colour image: nii reads 16-bit greyscale (counts) or 8-bit renderings", path=path
            )
        return RawScan(
            counts=img[None], energies=(EnergyChannel("single"),), metadata={**meta, "rendering": "counts16"}, **common
        )
    if img.dtype != np.uint8:
        raise UnsupportedFormatError(f"unsupported sample type {img.dtype}", path=path)
    return scan_from_8bit(img if img.ndim == 2 else img[..., 2::-1][..., :3], path, meta=meta)


def scan_from_8bit(img: np.ndarray, path: Path, *, meta: dict | None = None) -> Scan:
    """Build the :class:`Scan` of an 8-bit rendering: ``(H, W)`` grey or ``(H, W, 3)`` RGB."""
    meta = dict(meta or {})
    lossy = bool(meta.get("lossy", False))
    common = dict(pixel_pitch_mm=DEFAULT_PITCH_MM, scan_id=path.stem, rendered=True)
    if img.ndim == 3 and img.shape[-1] >= 3:
        rgb = np.ascontiguousarray(img[..., :3])
        if is_pseudocolor(rgb):
            l_high, material = decode_pseudocolor(rgb, lossy=lossy)
            return Scan(
                attenuation=l_high[None],
                energies=(EnergyChannel("high"),),
                valid=np.ones(material.shape, dtype=bool),
                zeff=CLASS_ZEFF[material],
                material=material,
                color=rgb,
                metadata={**meta, "rendering": "pseudocolor"},
                **common,
            )
        img = np.round(rgb.astype(np.float32).mean(axis=-1)).astype(np.uint8)
    if img.ndim == 3:  # grey + alpha
        img = img[..., 0]
    if img.ndim != 2:
        raise InvalidDataError(f"unexpected image shape {img.shape}", path=path)
    return Scan(
        attenuation=decode_greyscale(img)[None],
        energies=(EnergyChannel("single"),),
        valid=np.ones(img.shape, dtype=bool),
        metadata={**meta, "rendering": "greyscale"},
        **common,
    )


# --------------------------------------------------------------------------------------------
# writer


def write(
    scan: Scan | RawScan,
    path: str | os.PathLike,
    *,
    kind: str | None = None,
    container: str | None = None,
    quality: int = 95,
) -> Path:
    """Write a rendering atomically.

    Parameters
    ----------
    scan : Scan or RawScan
        A :class:`Scan` is rendered from its last (high-energy) attenuation plane; a single-energy
        :class:`RawScan` is written as a 16-bit greyscale PNG of its counts.
    kind : {"pseudocolor", "greyscale"}, optional
        Default: pseudo-colour when the scan has a material map, else greyscale.
    container : {"png", "jpeg"}, optional
        Default from the suffix of ``path`` (``.jpg``/``.jpeg`` -> JPEG, else PNG).
    quality : int
        JPEG quality (1-100).
    """
    import cv2

    path = Path(path)
    if container is None:
        container = "jpeg" if path.suffix.lower() in (".jpg", ".jpeg") else "png"
    if container not in ("png", "jpeg"):
        raise InvalidParameterError(f"container must be 'png' or 'jpeg', got {container!r}")
    if isinstance(scan, RawScan):
        if scan.n_energies != 1 or container != "png" or scan.counts.dtype != np.uint16:
            raise InvalidParameterError("a RawScan is written only as a 16-bit PNG of one uint16 energy plane")
        img = np.ascontiguousarray(scan.counts[0])
    elif isinstance(scan, Scan):
        if kind is None:
            kind = "pseudocolor" if scan.material is not None else "greyscale"
        l_high = scan.attenuation[-1]
        if kind == "pseudocolor":
            if scan.material is None:
                raise InvalidParameterError("pseudo-colour rendering needs the scan's material map")
            img = render_pseudocolor(l_high, scan.material)[..., ::-1]  # BGR for OpenCV
        elif kind == "greyscale":
            img = np.floor(255.0 * np.exp(-np.maximum(l_high, 0.0)) + 0.5).astype(np.uint8)
        else:
            raise InvalidParameterError(f"kind must be 'pseudocolor' or 'greyscale', got {kind!r}")
        img = np.ascontiguousarray(img)
    else:
        raise InvalidParameterError(f"scan must be a Scan or RawScan, got {type(scan).__name__}")
    if container == "jpeg":
        if not 1 <= int(quality) <= 100:
            raise InvalidParameterError(f"quality must be 1..100, got {quality!r}")
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    else:
        ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise InvalidParameterError(f"OpenCV could not encode a {container} image of shape {img.shape}")
    return atomic_write_bytes(path, buf.tobytes())

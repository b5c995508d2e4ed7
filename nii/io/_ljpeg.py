"""Lossless JPEG encoder (ITU-T T.81 Annex H, process 14; predictor 1 is DICOM's "SV1").

pydicom 3 decodes JPEG Lossless (transfer syntax ``1.2.840.10008.1.2.4.70``) through
pylibjpeg-libjpeg but has no encoder for it, and no offline encoder is installed, so nii carries
this small one (vectorised NumPy) for its DICOS writer. One grey component, predictor 1..7
(default 1, the left neighbour; the first row predicts from the left, the first column from
above, the first sample from ``2**(P-1)``), point transform 0, one optimal Huffman table per image (Annex K.2,
lengths capped at 16 bits). The output decodes bit-exactly with libjpeg (tested).
"""

from __future__ import annotations

import heapq
import struct

import numpy as np

from ..errors import InvalidParameterError

__all__ = ["encode_lossless"]

_CHUNK = 1 << 16  # samples per bit-packing chunk (bounds temporary memory)


def _differences(img: np.ndarray, precision: int, predictor: int) -> np.ndarray:
    x = img.astype(np.int64)
    pred = np.empty_like(x)
    # T.81 H.1.2.1: the first row predicts from the left, the first column from above, the first
    # sample from 2**(P-1); elsewhere the selected predictor (Ra left, Rb above, Rc above-left)
    ra, rb, rc = x[1:, :-1], x[:-1, 1:], x[:-1, :-1]
    pred[1:, 1:] = {
        1: lambda: ra,
        2: lambda: rb,
        3: lambda: rc,
        4: lambda: ra + rb - rc,
        5: lambda: ra + ((rb - rc) >> 1),
        6: lambda: rb + ((ra - rc) >> 1),
        7: lambda: (ra + rb) >> 1,
    }[predictor]()
    pred[0, 1:] = x[0, :-1]
    pred[1:, 0] = x[:-1, 0]
    pred[0, 0] = 1 << (precision - 1)
    d = (x - pred) & 0xFFFF  # modulo 2**16 (T.81 H.1.2.1)
    return np.where(d >= 0x8000, d - 0x10000, d).ravel()  # -32768..32767, -32768 <=> +32768


def _category(d: np.ndarray) -> np.ndarray:
    a = np.abs(d)
    ssss = np.zeros(d.shape, dtype=np.int64)
    nz = a > 0
    ssss[nz] = np.floor(np.log2(a[nz])).astype(np.int64) + 1
    return np.minimum(ssss, 16)


def _code_lengths(freq: np.ndarray) -> dict[int, int]:
    """Huffman code lengths <= 16 for the used symbols (Annex K.2, reserved all-ones code)."""
    symbols = [int(s) for s in np.flatnonzero(freq)]
    # a dummy symbol (256) of frequency 1 keeps any real code from being all ones
    heap = [(int(freq[s]), s, (s,)) for s in symbols] + [(1, 256, (256,))]
    heapq.heapify(heap)
    depth = {s: 0 for s in symbols + [256]}
    if len(heap) == 1:
        depth[symbols[0]] = 1
    tie = 1000
    while len(heap) > 1:
        f1, _, g1 = heapq.heappop(heap)
        f2, _, g2 = heapq.heappop(heap)
        for s in g1 + g2:
            depth[s] += 1
        heapq.heappush(heap, (f1 + f2, tie, g1 + g2))
        tie += 1
    if max(depth.values()) > 16:  # pathological skew: fall back to fixed 5-bit codes (<= 18 symbols)
        depth = {s: 5 for s in depth}
    # the dummy must take the last (all-ones) code of the longest length
    longest = max(depth.values())
    if depth[256] != longest:
        # swap with a real symbol of the longest length (same multiset of lengths: still complete)
        s = max((s for s in symbols if depth[s] == longest), key=lambda s: (freq[s] == 0, -freq[s]))
        depth[s], depth[256] = depth[256], depth[s]
    return {s: depth[s] for s in symbols} | {256: depth[256]}


def _canonical(lengths: dict[int, int]) -> tuple[dict[int, tuple[int, int]], bytes, bytes]:
    order = sorted(lengths, key=lambda s: (lengths[s], s == 256, s))
    codes: dict[int, tuple[int, int]] = {}
    code = 0
    prev = lengths[order[0]]
    code <<= 0
    for s in order:
        ln = lengths[s]
        code <<= ln - prev
        prev = ln
        codes[s] = (code, ln)
        code += 1
    real = [s for s in order if s != 256]
    bits = bytes(sum(1 for s in real if lengths[s] == n) for n in range(1, 17))
    return {s: codes[s] for s in real}, bits, bytes(real)


def encode_lossless(img: np.ndarray, *, precision: int | None = None, predictor: int = 1) -> bytes:
    """Encode a 2-D unsigned image as a lossless JPEG (SOF3) byte string.

    Parameters
    ----------
    img : ndarray (rows, columns), uint8 or uint16
    precision : int, optional
        Sample precision P in bits (2..16); default the dtype's width. Values must fit.
    predictor : int
        Selection value 1..7 (T.81 Table H.1); 1 (left neighbour) is what DICOM transfer syntax
        1.2.840.10008.1.2.4.70 ("SV1") requires; 1.2.840.10008.1.2.4.57 allows any.
    """
    if predictor not in range(1, 8):
        raise InvalidParameterError(f"predictor must be 1..7, got {predictor!r}")
    img = np.asarray(img)
    if img.ndim != 2 or img.dtype not in (np.uint8, np.uint16) or min(img.shape) == 0:
        raise InvalidParameterError(f"encode_lossless needs a non-empty 2-D uint8/uint16 image, got {img.shape} {img.dtype}")
    if img.shape[0] > 0xFFFF or img.shape[1] > 0xFFFF:
        raise InvalidParameterError(f"JPEG dimensions are limited to 65535, got {img.shape}")
    p = precision if precision is not None else img.dtype.itemsize * 8
    if not 2 <= p <= 16 or int(img.max()) >= (1 << p):
        raise InvalidParameterError(f"precision {p} cannot hold values up to {int(img.max())}")
    d = _differences(img, p, predictor)
    ssss = _category(d)
    freq = np.bincount(ssss, minlength=17)
    codes, bits, vals = _canonical(_code_lengths(freq))
    code_of = np.zeros(17, dtype=np.int64)
    len_of = np.zeros(17, dtype=np.int64)
    for s, (c, ln) in codes.items():
        code_of[s], len_of[s] = c, ln
    # additional bits: d for d > 0, d - 1 (two's complement low bits) for d < 0; none for SSSS 16
    extra = np.where(d < 0, d - 1, d) & ((np.int64(1) << ssss) - 1)
    extra = np.where(ssss == 16, 0, extra)
    nextra = np.where(ssss == 16, 0, ssss)
    word = (code_of[ssss] << nextra) | extra
    nbits = len_of[ssss] + nextra  # <= 32
    chunks = []
    for i in range(0, d.size, _CHUNK):
        w = word[i : i + _CHUNK]
        n = nbits[i : i + _CHUNK]
        idx = np.repeat(np.arange(n.size), n)
        start = np.cumsum(n) - n
        k = np.arange(idx.size) - start[idx]
        chunks.append(((w[idx] >> (n[idx] - 1 - k)) & 1).astype(np.uint8))
    bitstream = np.concatenate(chunks)
    pad = (-bitstream.size) % 8
    if pad:
        bitstream = np.concatenate([bitstream, np.ones(pad, np.uint8)])  # pad with 1-bits (F.1.2.3)
    data = np.packbits(bitstream)
    ff = np.flatnonzero(data == 0xFF)
    if ff.size:
        data = np.insert(data, ff + 1, 0)  # byte stuffing
    rows, cols = img.shape
    out = bytearray(b"\xff\xd8")
    out += b"\xff\xc3" + struct.pack(">HBHHB", 11, p, rows, cols, 1) + bytes([1, 0x11, 0])
    dht = bytes([0x00]) + bits + vals
    out += b"\xff\xc4" + struct.pack(">H", 2 + len(dht)) + dht
    out += b"\xff\xda" + struct.pack(">HB", 8, 1) + bytes([1, 0x00, predictor, 0, 0])  # Ss=predictor, Se=0, Ah/Al=0
    out += data.tobytes()
    out += b"\xff\xd9"
    return bytes(out)

"""A small PNG reader (8-bit RGB/RGBA, non-interlaced: what Chromium's --screenshot writes).

Only for tests: checking that a screenshot is not blank needs its pixels, and no imaging
library is a dependency of the project.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np


def _paeth_row(f: bytes, prev: np.ndarray, bpp: int) -> np.ndarray:
    out = bytearray(len(f))
    up = prev.tolist()
    for i, v in enumerate(f):
        a = out[i - bpp] if i >= bpp else 0
        b = up[i]
        c = up[i - bpp] if i >= bpp else 0
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        out[i] = (v + pred) & 0xFF
    return np.frombuffer(bytes(out), np.uint8)


def _avg_row(f: bytes, prev: np.ndarray, bpp: int) -> np.ndarray:
    out = bytearray(len(f))
    up = prev.tolist()
    for i, v in enumerate(f):
        a = out[i - bpp] if i >= bpp else 0
        out[i] = (v + ((a + up[i]) >> 1)) & 0xFF
    return np.frombuffer(bytes(out), np.uint8)


def read_png(path: Path) -> np.ndarray:
    """Pixels as an (height, width, channels) uint8 array."""
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG file")
    pos, idat = 8, []
    width = height = bpp = 0
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or color not in (2, 6) or interlace:
                raise ValueError(f"{path}: unsupported PNG (depth {depth}, colour {color})")
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat.append(body)
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    prev = np.zeros(stride, np.uint8)
    rows = []
    for y in range(height):
        start = y * (stride + 1)
        ftype, f = raw[start], raw[start + 1 : start + 1 + stride]
        cur = np.frombuffer(f, np.uint8)
        if ftype == 1:  # Sub: running sum per channel along the row
            cur = np.cumsum(cur.reshape(width, bpp), axis=0, dtype=np.uint32) & 0xFF
            cur = cur.astype(np.uint8).reshape(-1)
        elif ftype == 2:
            cur = cur + prev
        elif ftype == 3:
            cur = _avg_row(f, prev, bpp)
        elif ftype == 4:
            cur = _paeth_row(f, prev, bpp)
        rows.append(cur)
        prev = cur
    return np.stack(rows).reshape(height, width, bpp)

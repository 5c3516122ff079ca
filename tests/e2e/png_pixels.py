"""A tiny PNG reader (8-bit greyscale, RGB, RGBA; non-interlaced) for checking that an image is
not blank, without an imaging library."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def grey_levels(path: Path) -> tuple[int, int, list[int]]:
    """Width, height and every pixel's grey level (0-255, mean of the colour channels)."""
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG")
    pos, idat = 8, b""
    width = height = depth = colour = interlace = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    if depth != 8 or colour not in _CHANNELS or interlace:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour}, interlace {interlace}")
    channels = _CHANNELS[colour]
    stride = width * channels
    raw = zlib.decompress(idat)
    previous = bytearray(stride)
    levels: list[int] = []
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                line[i] = (line[i] + _paeth(left, up, corner)) & 0xFF
        colours = channels if channels in (1, 3) else channels - 1
        for x in range(width):
            pixel = line[x * channels : x * channels + colours]
            levels.append(sum(pixel) // colours)
        previous = line
    return width, height, levels


def ink(levels: list[int], white: int = 245) -> tuple[float, float]:
    """The share of pixels darker than ``white``, and the variance of the grey levels."""
    n = len(levels) or 1
    mean = sum(levels) / n
    variance = sum((v - mean) ** 2 for v in levels) / n
    return sum(1 for v in levels if v < white) / n, variance

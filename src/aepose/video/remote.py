"""Why a remote MP4 cannot be read: an index (``moov``) after the frames on a server that
ignores HTTP Range requests, told in one line."""

from __future__ import annotations

import struct
import urllib.request

__all__ = ["is_http", "unseekable_mp4"]


def is_http(source: str) -> bool:
    """Whether ``source`` is an http(s):// URL."""
    return source.lower().startswith(("http://", "https://"))


_HEAD_BYTES = 1 << 16  # enough for the top-level boxes in front of an MP4's frames


def unseekable_mp4(url: str, timeout_s: float) -> str | None:
    """Why the MP4 at ``url`` cannot be read over HTTP, or None when that is not the reason.

    FFmpeg reads an MP4 through its index (the ``moov`` box). When the index comes after the
    frames (``mdat``) it reads to the end to find it, then needs an HTTP Range request to go
    back to the frames; a server that ignores Range requests (answers 200 with the whole
    file, as ``python -m http.server`` does) leaves it with no decodable frame. Both facts
    are checked with one request for the first bytes (answered within ``timeout_s``).
    """
    request = urllib.request.Request(url, headers={"Range": f"bytes=0-{_HEAD_BYTES - 1}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            ignores_range = response.status == 200
            head = response.read(_HEAD_BYTES)
    except (OSError, ValueError):  # unreachable now, or no URL urllib can open
        return None
    if not ignores_range or _first_box(head, (b"moov", b"mdat")) != b"mdat":
        return None
    return (f"stream {url}: the server ignores HTTP Range requests and this MP4 has its index "
            "(moov atom) after the frames, so the frames cannot be reached; serve it from a "
            "server that supports Range requests, or move the index to the front (ffmpeg -i "
            "IN.mp4 -c copy -movflags +faststart OUT.mp4)")


def _first_box(head: bytes, kinds: tuple[bytes, ...]) -> bytes | None:
    """The first of ``kinds`` among the top-level ISO-BMFF boxes that start in ``head``
    (the first bytes of an MP4 file), or None."""
    offset = 0
    while offset + 8 <= len(head):
        size, kind = struct.unpack(">I4s", head[offset:offset + 8])
        if kind in kinds:
            return bytes(kind)
        if size == 1 and offset + 16 <= len(head):  # a 64-bit size follows the type
            size = struct.unpack(">Q", head[offset + 8:offset + 16])[0]
        if size < 8:  # 0: the box runs to the end of the file; < 8: not an MP4 box
            return None
        offset += size
    return None

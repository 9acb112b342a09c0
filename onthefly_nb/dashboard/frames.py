"""The WebSocket bridge's wire format. Every frame, both ways, is binary:
``[uint32 LE header length][UTF-8 JSON header][buffers]``, the header listing the buffers'
``path`` (server to client: where each goes in the state), ``offset`` and ``length``."""

from __future__ import annotations

import json
import math
import struct
from typing import Any

BINARY = (bytes, bytearray, memoryview)


def split_buffers(value: Any, path: tuple[str | int, ...] = ()) -> tuple[Any, list[list[str | int]], list[Any]]:
    """``value`` with every binary buffer (nested in dicts and lists) taken out, their paths and the buffers."""
    if isinstance(value, BINARY):
        return None, [list(path)], [value]
    if isinstance(value, dict | list | tuple):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        paths: list[list[str | int]] = []
        buffers: list[Any] = []
        kept: dict[Any, Any] = {}
        for key, item in items:
            inner, inner_paths, inner_buffers = split_buffers(item, (*path, key))
            kept[key] = inner
            paths += inner_paths
            buffers += inner_buffers
        return (kept if isinstance(value, dict) else list(kept.values())), paths, buffers
    return value, [], []


def encode_frame(header: dict[str, Any], buffers: list[Any] = ()) -> bytes:  # type: ignore[assignment]
    """One frame: the header (with each buffer's offset and length added) and the buffers."""
    offset, listed = 0, []
    for entry, buffer in zip(header.get("buffers", [{}] * len(buffers)), buffers):
        listed.append({**entry, "offset": offset, "length": len(buffer)})
        offset += len(buffer)
    text = json.dumps(finite({**header, "buffers": listed}), separators=(",", ":"), allow_nan=False).encode()
    return b"".join([struct.pack("<I", len(text)), text, *map(bytes, buffers)])


def state_frame(values: dict[str, Any]) -> bytes:
    """A ``state`` frame carrying ``values`` (trait name to value), buffers split out."""
    state, paths, buffers = split_buffers(values)
    return encode_frame({"type": "state", "state": state, "buffers": [{"path": p} for p in paths]}, buffers)


def decode_frame(frame: bytes) -> tuple[Any, list[memoryview]]:
    """A client's frame as ``(message content, buffers)``; ValueError if it is not one."""
    if not isinstance(frame, bytes) or len(frame) < 4:
        raise ValueError("a frame is binary: a 4-byte header length, the JSON header, the buffers")
    (size,) = struct.unpack_from("<I", frame)
    if size > len(frame) - 4:
        raise ValueError(f"the frame's header length {size} runs past its end ({len(frame)} bytes)")
    try:
        header = json.loads(frame[4:4 + size])
    except RecursionError:
        raise ValueError("the frame's JSON header nests too deeply") from None
    if not isinstance(header, dict) or header.get("type") != "message" or not isinstance(header.get("buffers", []),
                                                                                            list):
        raise ValueError("a client frame's header is {type: 'message', content, buffers}")
    payload, buffers = memoryview(frame)[4 + size:], []
    for entry in header.get("buffers", []):
        if not isinstance(entry, dict):
            raise ValueError(f"a buffer entry is {{offset, length}}, got {entry!r:.80}")
        start, length = entry.get("offset"), entry.get("length")
        if not (isinstance(start, int) and isinstance(length, int) and 0 <= start <= start + length <= len(payload)):
            raise ValueError(f"a buffer entry {entry!r:.80} does not fit the frame's payload")
        buffers.append(payload[start:start + length])
    return header.get("content"), buffers


def finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None, which JSON (and JSON.parse) can carry."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value

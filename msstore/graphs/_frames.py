"""One checkpoint or one batch of pending writes as bytes, for the write-ahead log.

A frame is a 4-byte length, a JSON header (ids, metadata, versions, and for each value its
name, type and length) and then the values' bytes as they are: the serialized values are not
re-encoded (no base64), so a frame costs little more than the values it carries.
"""

from __future__ import annotations

import struct
from typing import Any, Final

import orjson

from msstore.errors import SerializationError

from ._records import Blob, CheckpointPut, StoredCheckpoint, StoredWrite, WritesPut

__all__ = ["decode", "encode"]

_LENGTH: Final = struct.Struct("<I")


def encode(entry: CheckpointPut | WritesPut) -> bytes:
    """The frame of ``entry`` (its ``seq`` is not kept: the log's revision is)."""
    parts: list[bytes]
    if isinstance(entry, CheckpointPut):
        cp = entry.checkpoint
        header: dict[str, Any] = {
            "k": "c",
            "t": cp.thread_id,
            "n": cp.ns,
            "i": cp.checkpoint_id,
            "p": cp.parent_id,
            "bt": cp.body_type,
            "m": cp.metadata,
            "v": cp.versions,
            "at": entry.at,
            "b": [[b.channel, b.version, b.type, len(b.data)] for b in entry.blobs],
            "bl": len(cp.body),
        }
        parts = [cp.body, *(b.data for b in entry.blobs)]
    else:
        header = {
            "k": "w",
            "t": entry.thread_id,
            "n": entry.ns,
            "i": entry.checkpoint_id,
            "at": entry.at,
            "w": [
                [w.task_id, w.idx, w.channel, w.type, w.task_path, replace, len(w.data)]
                for w, replace in entry.writes
            ],
        }
        parts = [w.data for w, _ in entry.writes]
    try:
        head = orjson.dumps(header, option=orjson.OPT_NON_STR_KEYS)
    except TypeError as err:
        raise SerializationError(f"checkpoint metadata cannot be logged as JSON: {err}") from None
    return b"".join([_LENGTH.pack(len(head)), head, *parts])


def decode(frame: bytes, *, seq: int) -> CheckpointPut | WritesPut:
    """The entry a frame holds, with ``seq``."""
    try:
        (size,) = _LENGTH.unpack_from(frame)
        header = orjson.loads(frame[_LENGTH.size : _LENGTH.size + size])
        offset = _LENGTH.size + size

        def take(n: int) -> bytes:
            nonlocal offset
            if offset + n > len(frame):
                raise ValueError("short frame")
            out = frame[offset : offset + n]
            offset += n
            return out

        if header["k"] == "c":
            body = take(header["bl"])
            cp = StoredCheckpoint(
                thread_id=header["t"],
                ns=header["n"],
                checkpoint_id=header["i"],
                parent_id=header["p"],
                body_type=header["bt"],
                body=body,
                metadata=header["m"],
                versions=header["v"],
            )
            blobs = tuple(
                Blob(cp.thread_id, cp.ns, channel, version, kind, take(n))
                for channel, version, kind, n in header["b"]
            )
            return CheckpointPut(cp, blobs, seq=seq, at=header["at"])
        writes = tuple(
            (StoredWrite(task, idx, channel, kind, take(n), path), bool(replace))
            for task, idx, channel, kind, path, replace, n in header["w"]
        )
        return WritesPut(header["t"], header["n"], header["i"], writes, seq=seq, at=header["at"])
    except (ValueError, KeyError, TypeError, struct.error) as err:
        raise SerializationError(f"a logged checkpoint frame is corrupt: {err}") from None

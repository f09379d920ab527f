"""Bucket settings: what a KV bucket keeps and for how long, validated once."""

from __future__ import annotations

import re
from typing import Literal

import attrs

from msstore.codec import DEFAULT_MAX_VALUE_BYTES
from msstore.errors import InvalidArgument
from msstore.ttl import check_ttl

__all__ = ["MAX_HISTORY", "BucketConfig"]

MAX_HISTORY = 64
_NAME = re.compile(r"[-_a-zA-Z0-9]{1,128}")


def _check_name(_: object, __: object, name: str) -> None:
    if type(name) is not str or _NAME.fullmatch(name) is None:
        raise InvalidArgument(
            f"invalid bucket name {name!r}",
            hint="bucket names are 1-128 characters of A-Z a-z 0-9 - _",
        )


def _check_history(_: object, __: object, history: int) -> None:
    if type(history) is not int or not 1 <= history <= MAX_HISTORY:
        raise InvalidArgument(f"history must be an int from 1 to {MAX_HISTORY}, got {history!r}")


def _check_bucket_ttl(_: object, __: object, ttl: int | None) -> None:
    if check_ttl(ttl) != ttl:
        raise InvalidArgument(f"bucket ttl must be whole seconds >= 1 or None, got {ttl!r}")


def _check_size(_: object, __: object, size: int) -> None:
    if type(size) is not int or size < 1:
        raise InvalidArgument(f"max_value_bytes must be a positive int, got {size!r}")


@attrs.frozen(kw_only=True)
class BucketConfig:
    """A KV bucket's settings (JetStream KV semantics; the memory backend honours them too).

    ``ttl`` is the bucket-wide max age in whole seconds (``None``: values never age out);
    ``history`` how many revisions a key keeps (1-64); ``per_key_ttl`` whether ``put(ttl=...)``
    is allowed; ``storage``, ``replicas`` and ``compression`` matter to servers only.
    """

    name: str = attrs.field(validator=_check_name)
    history: int = attrs.field(default=1, validator=_check_history)
    ttl: int | None = attrs.field(default=None, validator=_check_bucket_ttl)
    max_value_bytes: int = attrs.field(default=DEFAULT_MAX_VALUE_BYTES, validator=_check_size)
    per_key_ttl: bool = True
    storage: Literal["file", "memory"] = "file"
    replicas: int = 1
    compression: bool = False

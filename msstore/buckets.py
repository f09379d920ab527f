"""Bucket settings: what a KV bucket keeps and for how long, validated once."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from msstore._internal.options import opt_bool, opt_choice, opt_int
from msstore._internal.ttl import MAX_TTL_SECONDS, check_ttl
from msstore.codec import DEFAULT_MAX_VALUE_BYTES
from msstore.errors import InvalidArgument

__all__ = ["BUCKET_OPTIONS", "MAX_HISTORY", "MAX_REPLICAS", "BucketConfig"]

BUCKET_OPTIONS = frozenset(
    {"history", "ttl", "max_value_bytes", "per_key_ttl", "storage", "replicas", "compression"}
)

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


MAX_REPLICAS = 5  # JetStream's limit


def _check_replicas(_: object, __: object, replicas: int) -> None:
    if type(replicas) is not int or not 1 <= replicas <= MAX_REPLICAS:
        raise InvalidArgument(f"replicas must be an int from 1 to {MAX_REPLICAS}, got {replicas!r}")


def _check_storage(_: object, __: object, storage: str) -> None:
    if storage not in ("file", "memory"):
        raise InvalidArgument(f"storage must be file or memory, got {storage!r}")


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
    storage: Literal["file", "memory"] = attrs.field(default="file", validator=_check_storage)
    replicas: int = attrs.field(default=1, validator=_check_replicas)
    compression: bool = False

    @classmethod
    def from_options(
        cls, name: str, options: Mapping[str, Any], *, ttl: int | None = None, replicas: int = 1
    ) -> BucketConfig:
        """A bucket's settings from URL options (``history``, ``ttl``, ``max_value_bytes``,
        ``per_key_ttl``, ``storage``, ``replicas``, ``compression``), read strictly and in one
        place for every backend: a value out of range is an ``InvalidArgument`` naming the
        option and its range, never changed. ``ttl`` and ``replicas`` are the defaults."""
        return cls(
            name=name,
            history=opt_int(options, "history", 1, minimum=1, maximum=MAX_HISTORY),  # type: ignore[arg-type]
            ttl=opt_int(options, "ttl", ttl, minimum=1, maximum=MAX_TTL_SECONDS, nullable=True),
            max_value_bytes=opt_int(  # type: ignore[arg-type]
                options, "max_value_bytes", DEFAULT_MAX_VALUE_BYTES, minimum=1
            ),
            per_key_ttl=opt_bool(options, "per_key_ttl", True),
            storage=opt_choice(options, "storage", "file", ("file", "memory")),  # type: ignore[arg-type]
            replicas=opt_int(options, "replicas", replicas, minimum=1, maximum=MAX_REPLICAS),  # type: ignore[arg-type]
            compression=opt_bool(options, "compression", False),
        )

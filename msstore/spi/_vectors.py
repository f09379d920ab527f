"""Checks every vector index shares: metrics, vector types, ids, matrices, ``k``, metadata.

Pure validation, no I/O: the memory and pgvector indexes call the same functions, so a wrong
dimension, a NaN or a duplicate id is refused with the same :class:`InvalidArgument` everywhere,
before anything is written. numpy is imported on first use (``msstore[vector]``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from msstore.errors import InvalidArgument, Unsupported

from ._checks import check_many, check_mapping

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "MAX_DIM",
    "METRICS",
    "VECTOR_TYPES",
    "as_matrix",
    "check_dim",
    "check_ids",
    "check_k",
    "check_metadata",
    "check_metric",
    "check_vector_type",
    "check_where",
    "numpy",
]

METRICS: Final = ("cosine", "l2", "ip")
"""The distance metrics."""
# pgvector's column types: 4-byte floats (up to 16,000 dims, 2,000 indexable by HNSW) and
# 2-byte floats (up to 4,000 indexable): half the storage and memory for a little precision.
VECTOR_TYPES: Final = ("vector", "halfvec")
"""The column types: 4-byte floats (``vector``) and 2-byte floats (``halfvec``)."""
MAX_DIM: Final = {"vector": 2000, "halfvec": 4000}
"""The largest dimension an HNSW index takes, per column type."""
HALF_MAX: Final = 65504.0  # the largest finite IEEE half-precision number


def numpy() -> Any:
    """The numpy module, or :class:`Unsupported` saying which extra brings it."""
    try:
        import numpy as np  # noqa: PLC0415 - numpy is optional: only vector users need it
    except ImportError:
        raise Unsupported(
            "vector indexes need numpy", capability="vector", hint="pip install 'msstore[vector]'"
        ) from None
    return np


def check_dim(dim: object, *, limit: int = 16000) -> int:
    """A vector dimension: an int from 1 to ``limit``."""
    if type(dim) is not int or not 1 <= dim <= limit:
        raise InvalidArgument(f"dim must be an int from 1 to {limit}, got {dim!r}")
    return dim


def check_metric(metric: object) -> str:
    """A distance metric: ``cosine``, ``l2`` or ``ip``."""
    if metric not in METRICS:
        raise InvalidArgument(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    return str(metric)


def check_vector_type(vector_type: object) -> str:
    """A column type: ``vector`` or ``halfvec``."""
    if vector_type not in VECTOR_TYPES:
        raise InvalidArgument(
            f"unknown vector type {vector_type!r}; choose one of {', '.join(VECTOR_TYPES)}"
        )
    return str(vector_type)


def check_k(k: object) -> int:
    """How many neighbours: an int >= 1."""
    if type(k) is not int or k < 1:
        raise InvalidArgument(f"k must be an int >= 1, got {k!r}")
    return k


def check_where(where: object) -> Mapping[str, Any] | None:
    """A metadata filter: ``None`` or a mapping (JSON containment); anything else refused."""
    if where is not None and not isinstance(where, Mapping):
        raise InvalidArgument(f"where must be a mapping, not {type(where).__name__}")
    return where


def check_ids(ids: Sequence[str]) -> list[str]:
    """Distinct non-empty strings, as a list (one id alone is refused: wrap it in a list)."""
    ids = check_many(ids, field="ids", of="strings")
    if not all(type(i) is str and i and "\x00" not in i for i in ids) or len(set(ids)) != len(ids):
        raise InvalidArgument("ids must be distinct non-empty strings without U+0000")
    return ids


def check_metadata(metadata: Sequence[Mapping[str, Any]] | None, rows: int) -> list[dict[str, Any]]:
    """One mapping per id (``None``: empty ones), as dicts."""
    if metadata is None:
        return [{} for _ in range(rows)]
    metas = check_many(metadata, field="metadata", of="mappings, one per id")
    if len(metas) != rows:
        raise InvalidArgument(f"{rows} ids but {len(metas)} metadata mappings")
    for i, meta in enumerate(metas):
        check_mapping(meta, field=f"metadata[{i}]")
    return [dict(m) for m in metas]


def as_matrix(
    vectors: Any, *, dim: int, rows: int | None = None, half: bool = False
) -> npt.NDArray[np.float32]:
    """``vectors`` as a 2-D float32 array of ``dim`` columns (one vector may be 1-D).

    Refused with ``InvalidArgument``: non-numbers, a wrong dimension, a row count other than
    ``rows``, NaN or infinity, and with ``half`` values beyond half precision's +-65504.
    """
    np_ = numpy()
    try:
        arr = np_.asarray(vectors, dtype=np_.float32)
    except (TypeError, ValueError) as err:
        raise InvalidArgument(f"vectors must be numbers: {err}") from None
    if rows == 0 and arr.size == 0:
        return np_.zeros((0, dim), dtype=np_.float32)  # type: ignore[no-any-return]
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise InvalidArgument(
            f"expected vectors of dimension {dim}, got shape {tuple(arr.shape)}",
            hint="embed with a model of the index's dimension",
        )
    if rows is not None and arr.shape[0] != rows:
        raise InvalidArgument(f"{rows} ids but {arr.shape[0]} vectors")
    if not np_.isfinite(arr).all():
        raise InvalidArgument("vectors must be finite (no NaN or infinity)")
    if half and arr.size and float(np_.abs(arr).max()) > HALF_MAX:
        raise InvalidArgument(f"halfvec values must lie within +-{HALF_MAX:g}")
    return arr  # type: ignore[no-any-return]

"""Pure parts of the knowledge base: fusion, embedders, fact checks, vector checks."""

from __future__ import annotations

import pytest

from msstore.errors import InvalidArgument
from msstore.spi import as_matrix, check_ids

np = pytest.importorskip("numpy", reason="the embedders need numpy")


def test_vector_checks() -> None:
    assert as_matrix([], dim=3, rows=0).shape == (0, 3)
    with pytest.raises(InvalidArgument):
        as_matrix([[1, 2]], dim=3)
    with pytest.raises(InvalidArgument):
        as_matrix([[1, 2, float("inf")]], dim=3)
    with pytest.raises(InvalidArgument):
        as_matrix([[70000.0, 0, 0]], dim=3, half=True)
    with pytest.raises(InvalidArgument):
        check_ids(["a", "a"])
    with pytest.raises(InvalidArgument):
        check_ids(["a\x00"])

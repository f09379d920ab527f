from __future__ import annotations

import enum
import json
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from msstore.codec import MAX_DEPTH, Codec, Encoded, default_codec
from msstore.errors import InvalidArgument, SerializationError

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(exclude_categories=("Cs",))),  # type: ignore[arg-type]
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@given(json_values)
def test_any_json_value_round_trips_exactly(value: Any) -> None:
    got = default_codec.decode(default_codec.encode(value))
    assert got == value
    assert json.dumps(got, sort_keys=True) == json.dumps(value, sort_keys=True)


@pytest.mark.parametrize(
    "n", [2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**40, -(10**40)]
)
def test_integers_at_and_past_64_bits_round_trip(n: int) -> None:
    for value in (n, [n], {"n": n, "s": "x"}):
        data = default_codec.encode(value)
        got = default_codec.decode(data)
        assert got == value and type(got if not isinstance(got, (list, dict)) else n) is int


@given(json_values)
def test_canonical_form_sorts_keys_and_decodes_to_the_same_value(value: Any) -> None:
    encoded = default_codec.encode_canonical(value)
    assert default_codec.decode(encoded.data) == value
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert json.loads(encoded.data) == json.loads(expected)
    reordered = json.loads(expected, object_pairs_hook=lambda pairs: dict(reversed(pairs)))
    assert default_codec.encode_canonical(reordered).data == encoded.data


@pytest.mark.parametrize(
    ("value", "flag"),
    [
        (1e15, False),
        (9999999999999998.0, False),
        (1e16, True),
        (-1e16, True),
        (1.5e300, True),
        (1e-7, False),  # a negative exponent keeps its '.' through JSONB
        ({"a": [1, {"b": 2.5e20}]}, True),
        ({"a": [1, {"b": 2.5}], "n": 10**30}, False),
        ("1e+16", False),
    ],
)
def test_the_walk_reports_floats_written_with_a_positive_exponent(value: Any, flag: bool) -> None:
    encoded = default_codec.encode_canonical(value)
    assert encoded.exponent_floats is flag
    if isinstance(value, float):
        assert (b"e+" in encoded.data) is flag  # what orjson writes is what the flag says


def test_an_encoded_value_is_stored_as_it_is_once_its_size_is_checked() -> None:
    value = {"b": [1, 2.5e20], "a": "x"}
    canonical = default_codec.encode_canonical(value)
    assert canonical.canonical and canonical.exponent_floats
    assert canonical.data == b'{"a":"x","b":[1,2.5e+20]}'
    assert default_codec.encode(canonical) is canonical.data
    assert default_codec.encode_canonical(canonical) is canonical
    assert Encoded.canonical_bytes(canonical.data) == canonical
    plain = Encoded(default_codec.encode(value), exponent_floats=True)  # keys as given
    assert plain.data == b'{"b":[1,2.5e+20],"a":"x"}'
    assert default_codec.encode_canonical(plain) == canonical  # re-encoded with keys sorted
    small = Codec(max_value_bytes=10)
    with pytest.raises(SerializationError, match="byte limit"):
        small.encode(canonical)
    with pytest.raises(SerializationError, match="byte limit"):
        small.encode_canonical(canonical)
    with pytest.raises(SerializationError):  # an Encoded inside a document is not JSON
        default_codec.encode([canonical])


def test_kv_stores_take_an_encoded_value_as_it_is() -> None:
    from msstore.backends.memory import MemoryKV
    from msstore.buckets import BucketConfig

    kv = MemoryKV(BucketConfig(name="enc"))
    encoded = default_codec.encode_canonical({"b": 1, "a": 2})
    kv.put("k", encoded)
    kv.put_many([("m", encoded)])
    for key in ("k", "m"):
        entry = kv.get(key)
        assert entry is not None and entry.raw == encoded.data and entry.value == {"a": 2, "b": 1}


def test_digit_runs_inside_strings_decode_exactly() -> None:
    value = {"phone": "12345678901234567890123", "f": 0.1}
    assert default_codec.decode(default_codec.encode(value)) == value


def test_only_documents_with_huge_integers_carry_the_exact_mark() -> None:
    assert default_codec.encode([2**64 - 1]) == b"[18446744073709551615]"
    assert default_codec.encode([2**64]) == b" [18446744073709551616]"
    assert json.loads(default_codec.encode({"n": 2**70})) == {"n": 2**70}  # still plain JSON


def test_stored_form_is_compact_utf8_json() -> None:
    assert default_codec.encode({"a": [1, "é"]}) == '{"a":[1,"é"]}'.encode()


def test_subclasses_of_json_types_are_stored_as_their_base() -> None:
    class Color(enum.StrEnum):
        RED = "red"

    class Level(enum.IntEnum):
        HIGH = 3

    assert default_codec.decode(default_codec.encode([Color.RED, Level.HIGH])) == ["red", 3]


@pytest.mark.parametrize(
    "value",
    [
        {1, 2},
        frozenset(),
        b"x",
        bytearray(b"x"),
        object(),
        float("nan"),
        [float("-inf")],
        {"a": {"b": float("inf")}},
        {1: 2},
        {None: 1},
        complex(1, 2),
        "\udc80",
    ],
)
def test_non_json_values_raise_serialization_error(value: Any) -> None:
    with pytest.raises(SerializationError) as info:
        default_codec.encode(value)
    assert isinstance(info.value, ValueError)


def test_nesting_limit() -> None:
    ok: Any = []
    for _ in range(MAX_DEPTH - 1):
        ok = [ok]
    default_codec.encode(ok)
    with pytest.raises(SerializationError, match="nested"):
        default_codec.encode([ok])


def test_size_limit_counts_encoded_bytes() -> None:
    codec = Codec(max_value_bytes=10)
    assert codec.encode("12345678") == b'"12345678"'
    with pytest.raises(SerializationError, match="10 byte limit"):
        codec.encode("123456789")
    with pytest.raises(InvalidArgument):
        Codec(max_value_bytes=0)


@pytest.mark.parametrize("data", [b"", b"{", b"nan", b"\xff\xfe", b"[1,]", b"NaN"])
def test_bad_stored_bytes_raise_serialization_error(data: bytes) -> None:
    with pytest.raises(SerializationError):
        default_codec.decode(data)


def test_records_go_through_cattrs() -> None:
    @attrs.frozen
    class Agent:
        id: str
        tags: list[str]
        score: float = 0.5

    a = Agent("a1", ["x"])
    data = default_codec.encode_record(a)
    assert default_codec.decode_record(data, Agent) == a
    with pytest.raises(SerializationError):
        default_codec.decode_record(b'{"id": "a1"}', Agent)

"""The typed decoder (one msgspec pass, float columns) against the general path (orjson, checks in Python).

Every batch the typed path takes must come out exactly as the general path gives it, and a batch it does
not take falls to the general path whole, so dead letters keep their reasons and details. These tests also
check that the typed path *is* taken for ordinary records, or the comparison would hold trivially.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowsentinel.consumers.decode import Decoded, InputMessage, TypedDecoder, decode_general, decode_messages
from flowsentinel.detector.schema import builtin_schema
from flowsentinel.fuzzing import fuzz_messages
from flowsentinel.producers.synthetic import SyntheticTraffic

KDD = builtin_schema("kdd")
RECORDS = SyntheticTraffic(seed=5).records(300, start=1.7e9, rate=100.0)


def goflow2_flow(i: int) -> dict:
    """A goflow2 JSON record: IPFIX, or every third one NetFlow v5 (no ``etype``, no ``tcp_flags``)."""
    start = 1_700_000_000_000_000_000 + i * 500_000_000
    rec = {"type": "IPFIX", "time_flow_start_ns": start, "src_addr": f"10.1.0.{i % 50}", "proto": "TCP",
           "dst_port": 443, "packets": 3 + i, "bytes": 180 * i, "etype": "IPv4", "tcp_flags": 27, "icmp_type": 0,
           "icmp_code": 0, "as_path": [], "next_hop": "0.0.0.0"}  # fmt: skip
    if i % 3 == 0:
        rec["type"] = "NETFLOW_V5"
        del rec["etype"], rec["tcp_flags"]
    return rec


def messages(values: list[bytes | None], first: int = 0) -> list[InputMessage]:
    return [InputMessage("in", 1, first + i, b"k", v, 0) for i, v in enumerate(values)]


def encode(records: list[dict]) -> list[bytes | None]:
    return [json.dumps(r).encode() for r in records]


def assert_same(got: Decoded, want: Decoded) -> None:
    (a, kept_a, dead_a), (b, kept_b, dead_b) = got, want
    for name in ("numeric", "categorical", "keys", "timestamps"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), name
        assert [type(v) for v in x.ravel().tolist()] == [type(v) for v in y.ravel().tolist()], name
    assert (a.labels is None) == (b.labels is None)
    if a.labels is not None:
        assert a.labels.tolist() == b.labels.tolist()
    assert a.positions == b.positions and a.repaired == b.repaired
    assert [str(e) for e in a.rejected] == [str(e) for e in b.rejected]
    assert kept_a == kept_b
    assert [(d.message, d.reason, d.detail) for d in dead_a] == [
        (d.message, d.reason, d.detail) for d in dead_b
    ]


def both(msgs: list[InputMessage], schema=KDD, **options) -> tuple[Decoded | None, Decoded]:
    typed = TypedDecoder.of(
        schema,
        allow_extra_fields=options.get("allow_extra_fields", False),
        schema_field=options.get("schema_field", "required"),
    )
    assert typed is not None
    return typed.decode(msgs, max_bytes=65_536), decode_general(msgs, schema, max_bytes=65_536, **options)


def test_ordinary_records_take_the_typed_path_and_decode_as_the_general_path_does():
    typed, general = both(messages(encode(RECORDS)))
    assert typed is not None, "the typed path refused a batch of ordinary records"
    assert_same(typed, general)
    assert len(general[0]) == len(RECORDS)


def test_a_batch_with_a_valid_record_that_does_not_type_is_read_whole_by_the_general_path():
    values = encode(RECORDS[:50])
    values[30] = json.dumps({**RECORDS[30], "duration": "3"}).encode()  # numbers as text: valid
    typed, general = both(messages(values))
    assert typed is None
    assert_same(decode_messages(messages(values), KDD, max_bytes=65_536), general)
    assert not general[2] and len(general[0]) == 50


def test_values_the_checks_refuse_are_dead_lettered_as_the_general_path_says():
    """Only the refused records are read again: a bad record in every batch must not double the work."""
    values = encode(RECORDS[:50])
    for i, change in [
        (3, {"duration": -1}),
        (17, {"service": " "}),
        (40, {"ts": 1e12}),
        (41, {"duration": 10**400}),
    ]:
        values[i] = json.dumps({**RECORDS[i], **change}).encode()
    values[20], values[30], values[45] = b'{"not": "a record"', None, b"x" * 70_000
    typed, general = both(messages(values))
    assert typed is not None
    assert_same(typed, general)
    assert [d.reason for d in general[2]] == [
        "negative_value", "missing_value", "not_json", "empty", "bad_timestamp", "non_finite", "oversized"
    ]  # fmt: skip


@pytest.mark.parametrize(
    "change",
    [
        {"duration": "3"},  # numeric text: read by the general path, not the typed one
        {"duration": True},
        {"duration": None},
        {"schema_version": 1.0},  # equal to 1 in Python: the general path accepts it
        {"schema": None},
        {"extra": 1},
        {"protocol_type": 6},  # a number where text belongs: text "6"
        {"src_host": 10},
        {"src_host": " 10.0.0.1 "},
        {"ts": "1700000000"},
        {"label": None},
        {"difficulty": 3},
    ],
    ids=repr,
)
def test_unusual_values_decode_as_the_general_path_does(change):
    values = encode([*RECORDS[:3], {**RECORDS[3], **change}])
    assert_same(
        decode_messages(messages(values), KDD, max_bytes=65_536),
        decode_general(messages(values), KDD, max_bytes=65_536),
    )


def test_optional_features_untagged_records_and_extra_fields_as_the_general_path():
    """goflow2: optional features absent from NetFlow v5 records, records without ``schema``."""
    schema = builtin_schema("goflow2")
    records = [goflow2_flow(i) for i in range(1, 60)]
    assert any(set(schema.optional_columns) - set(r) for r in records), "no record lacks an optional feature"
    msgs = messages(encode(records))
    typed, general = both(msgs, schema, schema_field="optional", allow_extra_fields=True)
    assert typed is not None and len(general[0]) == len(records)
    assert_same(typed, general)
    assert_same(
        decode_messages(msgs, schema, max_bytes=65_536),  # tagged records required: all wrong_schema
        decode_general(msgs, schema, max_bytes=65_536),
    )


def test_attacker_shaped_batches_decode_as_the_general_path_does():
    """The fuzzer of the service's record path: whatever a batch holds, the answer is the general path's."""
    taken = 0
    for seed in range(200):
        rng = random.Random(seed)
        pairs = fuzz_messages(rng, RECORDS[:50], rng.randrange(1, 6))
        for value in [v for _, v in pairs] + [None]:
            single = messages([value, *encode(RECORDS[:2])], seed * 10)
            typed, general = both(single)
            if typed is not None:
                taken += 1
                assert_same(typed, general)
            assert_same(decode_messages(single, KDD, max_bytes=65_536), general)
    assert taken > 50, f"the typed path took only {taken} fuzzed batches"


numbers = st.one_of(
    st.integers(min_value=0, max_value=2**70),
    st.floats(min_value=0, allow_nan=False, allow_infinity=False),
    st.floats(min_value=0, max_value=1e-300),  # subnormals
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(values=st.lists(numbers, min_size=len(KDD.numeric), max_size=len(KDD.numeric)), text=st.text())
def test_any_numbers_read_as_the_same_floats(values, text):
    """Decimal to double: msgspec and orjson (or Python, for integers beyond 64 bits) must agree to the bit."""
    record = {**RECORDS[0], **dict(zip(KDD.numeric, values, strict=True)), "service": text or "x"}
    typed, general = both(messages([json.dumps(record).encode()]))
    if typed is None:  # only where the general path rejects it (an integer beyond float range, blank text)
        assert general[2] or general[0].repaired
    else:
        assert_same(typed, general)


def test_a_label_only_a_refused_record_carries_reads_as_the_general_path_reads_it():
    """Live records carry no label; where only a bad one does, the general path gives every record an
    empty label (the batch has a label column), and so must the typed path."""
    records = [{k: v for k, v in r.items() if k != "label"} for r in RECORDS[:20]]
    records[5] = {**RECORDS[5], "duration": "abc"}
    typed, general = both(messages(encode(records)))
    assert typed is not None and general[0].labels is not None
    assert_same(typed, general)


def test_a_batch_mostly_of_messages_that_do_not_type_goes_to_the_general_path_whole():
    """A flood of bad messages: re-reading them apart after the typed pass would read them twice."""
    values = encode(RECORDS[:20])
    for i in range(0, 20, 3):  # 7 of 20 do not type
        values[i] = b"not json"
    typed, general = both(messages(values))
    assert typed is None
    assert_same(decode_messages(messages(values), KDD, max_bytes=65_536), general)
    assert len(general[2]) == 7

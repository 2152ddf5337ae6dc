from __future__ import annotations

import math

import numpy as np
import pytest

from flowsentinel.detector.errors import RecordError, SchemaError
from flowsentinel.detector.schema import (
    GLOBAL_KEY,
    KDD_FEATURES,
    Schema,
    builtin_schema,
    load_schema,
    normalize_name,
    parse_table,
)
from tests.support import TOY


def kdd_row(**over: object) -> dict[str, object]:
    row: dict[str, object] = {f: "0" for f in KDD_FEATURES}
    row.update(protocol_type="tcp", service="http", flag="SF", label="normal.")
    row.update(over)
    return row


def table_of(rows: list[dict[str, object]]) -> dict[str, list[object]]:
    keys = rows[0].keys()
    return {k: [r.get(k) for r in rows] for k in keys}


def test_kdd_schema_has_the_41_standard_features():
    s = builtin_schema("kdd")
    assert len(s.features) == 41
    assert s.numeric[0] == "duration" and s.numeric[-1] == "dst_host_srv_rerror_rate"
    assert s.categorical == ("protocol_type", "service", "flag")
    assert builtin_schema("nsl-kdd") is s


def test_unknown_schema_name_is_named():
    with pytest.raises(SchemaError, match="unknown schema 'kddx'"):
        builtin_schema("kddx")


def test_parse_kdd_strips_trailing_dot_and_marks_normal():
    s = builtin_schema("kdd")
    b = parse_table(s, table_of([kdd_row(), kdd_row(label="smurf.")]), ["line 1", "line 2"])
    assert list(b.labels) == ["normal", "smurf"]
    assert b.is_normal.tolist() == [True, False]
    assert b.keys.tolist() == [GLOBAL_KEY, GLOBAL_KEY]
    assert b.numeric.shape == (2, 38)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("abc", "not a number"),
        ("", "missing value"),
        (None, "missing value"),
        ("nan", "non-finite value (NaN)"),
        (float("nan"), "non-finite value (NaN)"),
        ("inf", "non-finite value (inf)"),
        ("-Infinity", "non-finite value (inf)"),
        ("-5", "negative value"),
        (True, "not a number (boolean)"),
        (10**400, "non-finite value (inf)"),  # JSON allows it; beyond float range
        (-(10**400), "non-finite value (inf)"),
    ],
)
def test_bad_numeric_value_rejects_only_its_record_and_names_field_value_line(value, reason):
    s = builtin_schema("kdd")
    rows = [kdd_row(), kdd_row(src_bytes=value), kdd_row()]
    b = parse_table(s, table_of(rows), ["f line 1", "f line 2", "f line 3"])
    assert len(b) == 2
    assert b.positions == ["f line 1", "f line 3"]
    (err,) = b.rejected
    assert isinstance(err, RecordError)
    assert err.field == "src_bytes"
    assert err.where == "f line 2"
    assert reason in str(err)
    assert str(err).startswith("f line 2: field 'src_bytes' = ")


def test_empty_category_and_missing_label_are_rejected():
    s = builtin_schema("kdd")
    b = parse_table(s, table_of([kdd_row(service=" "), kdd_row(label="")]), ["l1", "l2"])
    assert len(b) == 0
    assert [e.field for e in b.rejected] == ["service", "label"]


def test_json_numbers_and_integral_float_categories():
    s = Schema.from_dict({"name": "p", "numeric": ["bytes"], "categorical": ["port"]})
    b = parse_table(s, {"bytes": [10, 2.5], "port": [80, 443.0]}, ["a", "b"])
    assert b.numeric[:, 0].tolist() == [10.0, 2.5]
    assert b.categorical[:, 0].tolist() == ["80", "443"]


def test_missing_feature_column_is_a_schema_error():
    with pytest.raises(SchemaError, match="no field 'packets'"):
        parse_table(TOY, {"bytes": ["1"], "duration": ["1"], "proto": ["tcp"], "service": ["x"]}, ["1"])


def test_zeek_unset_tokens_are_repaired_to_zero_and_counted():
    s = builtin_schema("zeek-conn")
    table = {f: ["1"] * 2 for f in s.numeric}
    table.update({f: ["tcp"] * 2 for f in s.categorical})
    table["duration"] = ["-", "0.5"]
    table["orig_bytes"] = ["(empty)", "3"]
    b = parse_table(s, table, ["1", "2"])
    assert len(b) == 2 and not b.rejected
    assert b.numeric[0, 0] == 0.0
    assert b.repaired == {"duration": 1, "orig_bytes": 1}


def test_cic_nonfinite_rates_are_repaired_and_signed_fields_accept_negatives():
    s = builtin_schema("cicflowmeter")
    table = {f: ["1", "1"] for f in s.numeric}
    table.update({"Dst Port": ["80", "53"], "Protocol": ["6", "17"]})
    table["Flow Bytes/s"] = ["Infinity", "NaN"]
    table["FWD Init Win Bytes"] = ["-1", "-1"]
    b = parse_table(s, table, ["1", "2"])
    assert len(b) == 2
    assert b.repaired == {"Flow Bytes/s": 2}


def test_datetime_timestamps_parse_iso_and_cic_day_first():
    s = Schema.from_dict(
        {"name": "t", "numeric": ["x"], "categorical": [], "timestamp": "ts", "timestamp_kind": "datetime"}
    )
    b = parse_table(
        s, {"x": ["1", "1", "1"], "ts": ["2017-07-03 11:57:00", "3/7/2017 11:57", "junk"]}, list("abc")
    )
    assert len(b) == 2
    assert b.timestamps[0] == b.timestamps[1]
    assert math.isclose(b.timestamps[0], 1499083020.0)
    assert b.rejected[0].field == "ts"


def test_header_resolution_accepts_original_cic_names_with_stray_spaces():
    s = builtin_schema("cicflowmeter")
    original = [" " + a[0] if a else " " + f for f, a in ((f, s.aliases.get(f, ())) for f in s.features)]
    mapping = s.resolve_header(original)
    assert mapping["Total Fwd Packet"] == original.index(" Total Fwd Packets")
    assert mapping["Dst Port"] == original.index(" Destination Port")


def test_header_missing_a_feature_names_it():
    s = builtin_schema("cicflowmeter")
    with pytest.raises(SchemaError, match="no column for field 'Flow Duration'"):
        s.resolve_header(["Src IP", "Label"])


def test_normalize_name():
    assert normalize_name(" Fwd Avg Bytes/Bulk") == "fwdavgbytesbulk"


def test_schema_validation_names_the_bad_value():
    with pytest.raises(SchemaError, match="unknown schema key 'numerc'"):
        Schema.from_dict({"name": "x", "numerc": ["a"]})
    with pytest.raises(SchemaError, match="listed twice"):
        Schema.from_dict({"name": "x", "numeric": ["a"], "categorical": ["a"]})
    with pytest.raises(SchemaError, match="nonfinite 'drop'"):
        Schema.from_dict({"name": "x", "numeric": ["a"], "nonfinite": "drop"})
    with pytest.raises(SchemaError, match="'version' = 'one'"):
        Schema.from_dict({"name": "x", "numeric": ["a"], "version": "one"})


def test_schema_round_trips_through_dict():
    for name in ("kdd", "cicflowmeter", "zeek-conn"):
        s = builtin_schema(name)
        assert Schema.from_dict(s.to_dict()) == s


def test_user_schema_file_toml_and_yaml(tmp_path):
    toml = tmp_path / "flows.toml"
    toml.write_text(
        'name = "myflows"\nnumeric = ["bytes_in", "bytes_out"]\ncategorical = ["proto"]\n'
        'key = "src"\nlabel = "verdict"\nnormal_labels = ["ok"]\n[aliases]\nbytes_in = ["BytesIn"]\n'
    )
    s = load_schema(toml)
    assert s.name == "myflows" and s.aliases["bytes_in"] == ("BytesIn",)
    yaml_file = tmp_path / "flows.yaml"
    yaml_file.write_text("name: myflows\nnumeric: [bytes_in, bytes_out]\ncategorical: [proto]\n")
    assert load_schema(yaml_file).numeric == ("bytes_in", "bytes_out")


def test_broken_schema_file_is_one_line_naming_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(SchemaError, match="bad.toml") as info:
        load_schema(bad)
    assert "\n" not in str(info.value)
    with pytest.raises(SchemaError, match="cannot read schema file"):
        load_schema(tmp_path / "absent.toml")


def test_readme_example_schema_file_loads():
    from tests.support import REPO

    s = load_schema(REPO / "docs" / "example-schema.toml")
    assert s.key and s.label and s.numeric


def test_is_normal_is_case_insensitive():
    s = builtin_schema("cicflowmeter")
    assert s.is_normal(np.array(["BENIGN", "benign", "DDoS"], dtype=object)).tolist() == [True, True, False]


def _json_rows(n: int) -> list[dict[str, object]]:
    """Records as live JSON gives them: numbers as int or float, text as str (the parser's fast paths)."""
    rng = np.random.default_rng(5)
    rows = []
    for i in range(n):
        row: dict[str, object] = {
            f: (int(rng.integers(0, 9)) if i % 2 else float(rng.random() * 50)) for f in KDD_FEATURES
        }
        row.update(protocol_type=" tcp", service=["http", "ftp "][i % 2], flag="SF", src_host=f" 10.0.0.{i} ")
        row.update(ts=1.7e9 + i, label=[None, "normal.", " neptune."][i % 3])
        rows.append(row)
    return rows


@pytest.mark.parametrize(
    "odd",
    [
        None,
        "",
        " 7 ",
        True,
        [1],
        float("nan"),
        float("inf"),
        -3,
        6.0,
        "x" * 300,
        10**400,
        "9" * 5000,  # as text: infinite, however the column is read (was "not a number" after pandas)
        "1_000",
        "١٢٣",
        "５００",
    ],
)
def test_one_odd_value_sends_its_column_down_the_general_path_with_the_same_results(odd):
    """Each column has a fast path for the types live JSON gives and a general one for anything else: a
    record with an odd value in a column makes that column take the general path, and every other record
    must come out exactly as on the fast path."""
    schema = builtin_schema("kdd")
    good = _json_rows(12)
    fast = parse_table(schema, table_of(good), [f"m{i}" for i in range(12)])
    for name in (*schema.numeric[:3], "duration", *schema.categorical, "src_host", "ts", "label"):
        rows = [*good, {**good[0], name: odd}]
        both = parse_table(schema, table_of(rows), [f"m{i}" for i in range(13)])
        keep = both.row_index < 12
        assert both.row_index[keep].tolist() == list(range(12)), name
        for part in ("numeric", "timestamps"):
            assert np.array_equal(getattr(both, part)[keep], getattr(fast, part), equal_nan=True), (
                name,
                part,
            )
        for part in ("categorical", "keys"):
            assert getattr(both, part)[keep].tolist() == getattr(fast, part).tolist(), (name, part)
        assert both.labels is not None and fast.labels is not None
        assert both.labels[keep].tolist() == fast.labels.tolist(), name
        # and the odd record is judged alike whichever path its column takes (a list in another record
        # sends the column down the general path)
        # or text that is not a number in another record, which sends it to pandas' coercion)
        verdict = [(e.code, e.field) for e in both.rejected if e.where == "m12"]
        for trigger in ([0], "abc"):
            rows3 = [*rows, {**good[1], name: trigger}]
            general = parse_table(schema, table_of(rows3), [f"m{i}" for i in range(14)])
            assert verdict == [(e.code, e.field) for e in general.rejected if e.where == "m12"], (
                name,
                trigger,
            )
            if not verdict:
                at = general.row_index.tolist().index(12)
                assert both.numeric[-1].tolist() == general.numeric[at].tolist(), (name, trigger)


@pytest.mark.parametrize(
    "ts, ok",
    [
        (1.7e9, True),
        (0, True),
        (1.7e12, False),
        (1e300, False),
        (10**400, False),
        (-5, False),
        ("1.7e9", True),
        ("x", False),
        (None, True),
        (True, False),
    ],
)
def test_timestamps_outside_1970_to_2100_in_seconds_are_rejected(ts, ok):
    """A millisecond epoch (1.7e12) or a negative one once passed as an event time in the year 55,000."""
    s = builtin_schema("kdd")
    rows = [kdd_row(ts=1.7e9), kdd_row(ts=ts)]
    b = parse_table(s, table_of(rows), ["m0", "m1"])
    assert len(b) == (2 if ok else 1)
    if not ok:
        (err,) = b.rejected
        assert err.code == "bad_timestamp" and err.field == "ts" and "not a valid timestamp" in str(err)


def test_yaml_aliases_are_refused_so_a_billion_laughs_cannot_expand(tmp_path):
    """575 bytes of nested aliases under a schema key ran 86 s into a MemoryError."""
    lines = ["name: bomb", 'a: &a ["x","x","x","x","x","x","x","x","x"]']
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{cur}: &{cur} [{','.join([f'*{prev}'] * 9)}]")
    lines.append("numeric: *i")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SchemaError, match=r"line 3: YAML aliases \(\*a\) are not allowed in schema files"):
        load_schema(path)


def test_a_schema_file_is_bounded_in_size(tmp_path):
    path = tmp_path / "big.toml"
    path.write_text('name = "x"\n' + "# padding\n" * 200_000)
    with pytest.raises(SchemaError, match="bytes: more than a schema file holds"):
        load_schema(path)

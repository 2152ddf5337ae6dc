"""``schema infer``: each column's role and the reason, from samples built here with every kind of column a
flow export holds; the draft is always a valid schema that parses the rows it was drafted from."""

from __future__ import annotations

import numpy as np
import pytest

from flowsentinel.detector.errors import SchemaError
from flowsentinel.detector.infer import draft_schema
from flowsentinel.detector.schema import parse_table

HEADER = ["Flow ID", "ts", "src_ip", "src_port", "dst_ip", "dst_port", "proto", "bytes", "delta", "rate",
          "version", "attack_cat", "label"]  # fmt: skip


def flows(n: int = 300, seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        attack = i % 10 == 0
        rate = "-" if i % 17 == 0 else ("Infinity" if i % 29 == 0 else f"{rng.random() * 100:.3f}")
        rows.append([
            f"flow-{i}-{rng.integers(1 << 30)}", f"{1_700_000_000 + i * 0.5:.3f}", f"10.0.0.{i % 40}",
            str(rng.integers(1024, 65535)), f"192.168.1.{i % 7}", str(rng.choice([53, 80, 443])),
            str(rng.choice(["tcp", "udp"])), str(rng.integers(40, 9000)), f"{rng.normal():.4f}", rate,
            "4", "dos" if attack else "", "dos" if attack else "normal",
        ])  # fmt: skip
    return rows


def roles(draft) -> dict[str, str]:
    return {c.name: c.role for c in draft.columns}


def test_every_kind_of_column_gets_its_role():
    rows = flows()
    draft = draft_schema(HEADER, rows, name="lab-flows")
    assert roles(draft) == {
        "Flow ID": "left out", "ts": "timestamp", "src_ip": "key", "src_port": "left out", "dst_ip": "left out",
        "dst_port": "categorical", "proto": "categorical", "bytes": "numeric", "delta": "numeric",
        "rate": "numeric", "version": "left out", "attack_cat": "left out", "label": "label",
    }  # fmt: skip
    schema = draft.schema()
    assert schema.key == "src_ip" and schema.timestamp == "ts" and schema.timestamp_kind == "epoch"
    assert schema.signed == {"delta"} and schema.unset_tokens == {"-"} and schema.nonfinite == "zero"
    assert schema.normal_labels == {"normal"}
    table = {name: [r[i] for r in rows] for i, name in enumerate(HEADER) if name in schema.fields}
    batch = parse_table(schema, table, [f"row {i}" for i in range(len(rows))])
    assert len(batch) == len(rows) and not batch.rejected
    text = draft.toml("lab.csv", "lab.toml")
    assert "#   'src_port': a source port" in text and "#   'attack_cat': its name says ground truth" in text
    assert "--schema lab.toml --data lab.csv" in text


def test_a_header_less_export_with_dotted_labels_and_a_column_after_the_label():
    rows = [[str(i % 3), ["tcp", "udp"][i % 2], str(100 + i), ["normal.", "smurf."][i % 5 == 0], str(i % 21)]
            for i in range(200)]  # fmt: skip
    draft = draft_schema(None, rows, name="kdd-like")
    assert roles(draft) == {"col_0": "numeric", "col_1": "categorical", "col_2": "numeric", "col_3": "label",
                            "col_4": "left out"}  # fmt: skip
    schema = draft.schema()
    assert schema.columns == ("col_0", "col_1", "col_2", "col_3", "col_4") and not schema.has_header
    assert schema.label_strip == "." and schema.normal_labels == {"normal"} and schema.key is None
    assert "after the label in a header-less file" in draft.toml("kdd.csv")


def test_integer_labels_with_no_normal_name_take_0_as_normal_and_say_which_labels_were_seen():
    rows = [[str(i), str(i * 3 % 50), "1" if i % 4 == 0 else "0"] for i in range(100)]
    draft = draft_schema(["a", "b", "Label"], rows)
    assert draft.schema().normal_labels == {"0"}
    assert "# labels in the sample: '0' 75, '1' 25" in draft.toml("x.csv")


def test_no_normal_value_is_said_not_guessed():
    rows = [[str(i), ["scan", "flood"][i % 2]] for i in range(60)]
    text = draft_schema(["bytes", "label"], rows).toml("x.csv")
    assert "none looks normal: name the normal one(s) below" in text and "normal_labels = []" in text


def test_a_label_that_is_not_a_column_names_the_columns():
    with pytest.raises(
        SchemaError, match=r"--label 'Class' is not a column of the file \(columns: Flow ID, ts,"
    ):
        draft_schema(HEADER, flows(20), label="Class")


def test_date_time_stamps_and_a_column_named_as_a_key_among_two_address_columns():
    rows = [[f"2017-07-06 12:{i // 60:02d}:{i % 60:02d}.5", f"10.1.0.{i % 9}", f"10.2.0.{i % 5}", str(i % 13)]
            for i in range(120)]  # fmt: skip
    draft = draft_schema(["Timestamp", "Dst IP", "Source IP", "Flow Duration"], rows)
    assert roles(draft)["Source IP"] == "key" and roles(draft)["Dst IP"] == "left out"
    assert draft.schema().timestamp_kind == "datetime"

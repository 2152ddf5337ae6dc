"""A schema file may extend a built-in schema: add, drop or make fields optional, change any other key."""

from __future__ import annotations

import pytest

from flowsentinel.detector.errors import SchemaError
from flowsentinel.detector.schema import builtin_schema, load_schema


def write(tmp_path, text: str) -> str:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return str(path)


def test_extending_cicflowmeter_adds_drops_and_makes_optional(tmp_path):
    base = builtin_schema("cicflowmeter")
    s = load_schema(
        write(
            tmp_path,
            """
extends = "cicflowmeter"
add_categorical = ["Src Port"]
drop = ["Fwd URG Flags", "Timestamp"]
optional_columns = ["Flow Bytes/s"]
normal_labels = ["BENIGN", "Benign"]
[aliases]
"Src Port" = ["Source Port"]
""",
        )
    )
    assert s.name == "cicflowmeter-custom"
    assert "Fwd URG Flags" not in s.features and "Src Port" in s.categorical
    assert s.numeric == tuple(f for f in base.numeric if f != "Fwd URG Flags")
    assert s.timestamp is None and s.key == "Src IP" and s.label == "Label"
    assert set(s.optional_columns) == {*base.optional_columns, "Flow Bytes/s"} - {"Timestamp"}
    assert s.normal_labels == {"BENIGN", "Benign"} and s.aliases["Src Port"] == ("Source Port",)
    assert s.aliases["Dst Port"] == base.aliases["Dst Port"] and s.signed == base.signed


def test_extending_kdd_keeps_its_columns_and_takes_a_name(tmp_path):
    s = load_schema(write(tmp_path, 'extends = "nsl-kdd"\nname = "kdd-lite"\ndrop = ["num_outbound_cmds"]\n'))
    assert s.name == "kdd-lite" and "num_outbound_cmds" not in s.features
    assert s.columns == builtin_schema("kdd").columns and not s.has_header


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('extends = "sflow"', "extends: unknown"),
        ('extends = "cicflowmeter"\ndrop = ["Flow Duraton"]', "drop names 'Flow Duraton', not a field of"),
        ('extends = "cicflowmeter"\nadd_numeric = "Bytes"', "add_numeric must be a list of field names"),
    ],
)
def test_mistakes_are_named(tmp_path, text, says):
    with pytest.raises(SchemaError, match=says):
        load_schema(write(tmp_path, text))

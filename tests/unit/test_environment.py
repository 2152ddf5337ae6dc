"""The environment is read in one module, per command: a variable affects only the commands it belongs to,
means one thing, and a variable no command reads is named instead of ignored in silence."""

from __future__ import annotations

import ast
import re

import pytest

from flowsentinel import environment
from flowsentinel.cli import build_parser, main
from flowsentinel.consumers.settings import Settings
from tests.support import REPO

PACKAGE_FOLDERS = ("flowsentinel", "detector", "consumers", "producers")


def _reads_environment(path) -> list[str]:
    """``os.environ`` / ``os.getenv`` / ``environ`` imported from os, anywhere in a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb"):
            found.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [f"line {node.lineno}: from os import {a.name}" for a in node.names if "env" in a.name]
    return found


def test_only_the_environment_module_reads_the_environment():
    own = REPO / "flowsentinel" / "environment.py"
    for folder in PACKAGE_FOLDERS:
        for path in sorted((REPO / folder).rglob("*.py")):
            if path.resolve() != own.resolve():
                assert not _reads_environment(path), (path.relative_to(REPO), _reads_environment(path))
    assert _reads_environment(own)  # the check sees a read where there is one


def test_every_variable_the_code_names_is_registered():
    """A ``FLOWSENTINEL_X`` spelled anywhere in the code, scripts or deploy files is one the registry knows,
    so that it is documented and not reported as unknown."""
    known = set(environment.COMMAND_VARIABLES) | set(environment.variables("detect"))
    named: set[str] = set()
    for folder in (*PACKAGE_FOLDERS, "scripts", "deploy", "tests", "benchmarks"):
        for path in (REPO / folder).rglob("*"):
            if (
                path.is_file()
                and path.name != "test_environment.py"
                and path.suffix
                in (
                    ".py",
                    ".sh",
                    ".yml",
                    ".yaml",
                    ".env",
                    ".service",
                    ".toml",
                    "",
                )
            ):
                named |= set(
                    re.findall(r"FLOWSENTINEL_([A-Z0-9_]*[A-Z0-9])\b", path.read_text(errors="replace"))
                )
    assert named - known == set()


def test_every_command_variable_is_documented():
    operations = (REPO / "docs" / "operations.md").read_text()
    for name in environment.COMMAND_VARIABLES:
        assert f"| `{name}` |" in operations, name


def test_a_variable_reaches_only_its_commands():
    env = {"FLOWSENTINEL_RATE": "fast", "FLOWSENTINEL_RISK": "0.001", "FLOWSENTINEL_KAFKA_CLIENT": "kafka-python",
           "PATH": "/bin"}  # fmt: skip
    assert environment.for_command("detect", env) == {
        "FLOWSENTINEL_RISK": "0.001",
        "FLOWSENTINEL_KAFKA_CLIENT": "kafka-python",
    }
    assert environment.for_command("produce", env) == {
        "FLOWSENTINEL_RATE": "fast",
        "FLOWSENTINEL_KAFKA_CLIENT": "kafka-python",
    }
    assert environment.for_command("train", env) == {}
    assert Settings.load({}, environ=environment.for_command("detect", env)).risk == 0.001


def test_a_flag_names_only_a_variable_of_its_command():
    with pytest.raises(KeyError, match="not a variable of 'produce'"):
        environment.flag_default("produce", "RISK", 0.01)
    with pytest.raises(KeyError, match="not a flowsentinel variable"):
        environment.value("NO_SUCH_THING")


def test_an_unknown_variable_is_named_with_the_nearest_known_one():
    lines = environment.unknown_variables(
        {"FLOWSENTINEL_RISKK": "0.1", "FLOWSENTINEL_RISK": "0.1", "HOME": "/"}
    )
    assert lines == [
        "FLOWSENTINEL_RISKK is not a flowsentinel variable: ignored (did you mean FLOWSENTINEL_RISK?)"
    ]
    assert environment.unknown_variables({"FLOWSENTINEL_BATCH_SIZE": "5", "FLOWSENTINEL_TOPIC": "t"}) == []


def test_the_command_line_warns_of_an_unknown_variable(monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("FLOWSENTINEL_BACH_SIZE", "500")
    assert main(["sign", str(tmp_path)]) == 2  # no key: a usage error, after the start-up checks
    assert (
        "FLOWSENTINEL_BACH_SIZE is not a flowsentinel variable: ignored (did you mean FLOWSENTINEL_BATCH_SIZE?)"
        in (caplog.text)
    )


def test_produce_reads_the_input_topic_by_detects_name(monkeypatch):
    """FLOWSENTINEL_INPUT_TOPIC is the topic of records for every command; produce's older name still works,
    and the newer wins where both are set."""
    monkeypatch.setenv("FLOWSENTINEL_TOPIC", "older")
    args = build_parser().parse_args(["produce", "synthetic"])
    environment.resolve_flags(args)
    assert args.topic == "older"
    monkeypatch.setenv("FLOWSENTINEL_INPUT_TOPIC", "sensors")
    args = build_parser().parse_args(["produce", "synthetic"])
    environment.resolve_flags(args)
    assert args.topic == "sensors"

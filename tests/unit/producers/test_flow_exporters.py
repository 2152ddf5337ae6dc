"""The built-in schemas for what network teams stream: Suricata EVE ``flow`` events and NetFlow/IPFIX as
goflow2 writes it. The fixtures are made here, line for line in the exporters' formats (Suricata's EVE
documentation; goflow2's ``-format=json`` output), with the fields a real exporter leaves out left out:
ports and TCP flags on ICMP flows, ``app_proto`` where none was detected, ``tcp_flags``/``etype`` in a
NetFlow v5 record."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from flowsentinel.cli import main
from flowsentinel.consumers.decode import InputMessage, decode_messages
from flowsentinel.detector.schema import ABSENT, builtin_schema
from flowsentinel.producers.files import read_records

T0 = 1_767_324_720.0  # 2026-01-02


def _eve_time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+0000")  # Suricata's own form


def eve_flow(rng: np.random.Generator, i: int, kind: str) -> dict:
    """One Suricata EVE flow event: ``dns`` (UDP), ``https`` (TCP), ``ping`` (ICMP) or ``scan`` (a SYN
    answered by a RST to a random port)."""
    t = T0 + i * 0.5
    src = f"10.0.{i % 4}.{10 + i % 50}"
    flow: dict = {"start": _eve_time(t - 1), "end": _eve_time(t), "reason": "timeout", "alerted": False}
    event: dict = {"timestamp": _eve_time(t), "flow_id": 10_000 + i, "in_iface": "eth0", "event_type": "flow",
                   "src_ip": src, "dest_ip": "192.0.2.53", "community_id": f"1:{i:020d}="}  # fmt: skip
    if kind == "dns":
        q = int(rng.integers(60, 90))
        event.update(src_port=int(rng.integers(1024, 65535)), dest_port=53, proto="UDP", app_proto="dns")
        flow.update(pkts_toserver=1, pkts_toclient=1, bytes_toserver=q, bytes_toclient=q + int(rng.integers(16, 200)),
                    age=0, state="established")  # fmt: skip
    elif kind == "https":
        up, down = int(rng.integers(8, 30)), int(rng.integers(10, 60))
        event.update(src_port=int(rng.integers(1024, 65535)), dest_port=443, proto="TCP", app_proto="tls")
        flow.update(pkts_toserver=up, pkts_toclient=down, bytes_toserver=up * int(rng.integers(80, 300)),
                    bytes_toclient=down * int(rng.integers(600, 1400)), age=int(rng.integers(1, 60)),
                    state="closed")  # fmt: skip
        event["tcp"] = {"tcp_flags": "1b", "tcp_flags_ts": "1b", "tcp_flags_tc": "1b", "syn": True, "fin": True,
                        "psh": True, "ack": True, "state": "closed"}  # fmt: skip
    elif kind == "ping":
        event.update(proto="ICMP", icmp_type=8, icmp_code=0)
        flow.update(pkts_toserver=1, pkts_toclient=1, bytes_toserver=98, bytes_toclient=98, age=0,
                    state="established")  # fmt: skip
    else:  # scan
        event.update(
            src_port=int(rng.integers(40000, 41000)), dest_port=int(rng.integers(1, 10_000)), proto="TCP"
        )
        flow.update(
            pkts_toserver=1, pkts_toclient=1, bytes_toserver=60, bytes_toclient=54, age=0, state="closed"
        )
        event["tcp"] = {"tcp_flags": "16", "tcp_flags_ts": "02", "tcp_flags_tc": "14", "syn": True, "rst": True,
                        "ack": True, "state": "closed"}  # fmt: skip
    event["flow"] = flow
    return event


def goflow2_flow(rng: np.random.Generator, i: int, kind: str) -> dict:
    """One goflow2 JSON record: IPFIX with every field goflow2 writes, or (``v5``) a NetFlow v5 record
    without ``etype`` and ``tcp_flags``; ``scan`` is a one-packet SYN to a random port."""
    start = int((T0 + i * 0.5) * 1e9)
    rec: dict = {"type": "IPFIX", "time_received_ns": start + 2_000_000_000, "sequence_num": i, "sampling_rate": 0,
                 "sampler_address": "192.0.2.1", "time_flow_start_ns": start, "time_flow_end_ns": start + 10**9,
                 "src_addr": f"10.1.{i % 4}.{10 + i % 50}", "dst_addr": "198.51.100.20", "etype": "IPv4",
                 "src_port": int(rng.integers(1024, 65535)), "in_if": 11, "out_if": 12, "src_mac": "42:61:64:55:53:42",
                 "dst_mac": "48:6f:73:74:50:43", "src_vlan": 0, "dst_vlan": 0, "ip_tos": 0, "icmp_type": 0,
                 "icmp_code": 0, "src_as": 0, "dst_as": 0, "next_hop": "0.0.0.0", "src_net": "0.0.0.0/0",
                 "dst_net": "0.0.0.0/0", "bgp_communities": [], "as_path": [], "mpls_label": []}  # fmt: skip
    if kind == "scan":
        rec.update(proto="TCP", dst_port=int(rng.integers(1, 10_000)), bytes=44, packets=1, tcp_flags=2)
    elif i % 2:
        packets = int(rng.integers(8, 40))
        rec.update(
            proto="TCP",
            dst_port=443,
            packets=packets,
            bytes=packets * int(rng.integers(400, 1400)),
            tcp_flags=27,
        )
    else:
        rec.update(proto="UDP", dst_port=53, packets=1, bytes=int(rng.integers(60, 300)), tcp_flags=0)
    if kind == "v5" or (kind != "scan" and i % 7 == 0):  # NetFlow v5: no etype, no tcp_flags in goflow2's map
        rec["type"] = "NETFLOW_V5"
        del rec["etype"], rec["tcp_flags"]
    return rec


def write_lines(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def labelled(make, n_normal: int, n_attack: int, normal_kinds: tuple[str, ...], seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_normal + n_attack):
        kind = "scan" if i >= n_normal else normal_kinds[i % len(normal_kinds)]
        rec = make(rng, i, kind)
        rec["label"] = "scan" if kind == "scan" else "benign"
        out.append(rec)
    return out


def test_suricata_eve_flow_lines_parse_with_nested_fields_and_absent_ones(tmp_path):
    rng = np.random.default_rng(1)
    path = write_lines(
        tmp_path / "eve.json", [eve_flow(rng, i, k) for i, k in enumerate(("dns", "https", "ping", "scan"))]
    )
    batch = read_records(path, builtin_schema("suricata"))
    assert not batch.rejected and len(batch) == 4
    schema = batch.schema
    cat = {name: batch.categorical[:, j].tolist() for j, name in enumerate(schema.categorical)}
    num = {name: batch.numeric[:, j].tolist() for j, name in enumerate(schema.numeric)}
    assert cat["proto"] == ["UDP", "TCP", "ICMP", "TCP"]
    assert cat["app_proto"] == ["dns", "tls", ABSENT, ABSENT]
    assert cat["dest_port"][2] == ABSENT and cat["icmp_type"][2] == "8"
    assert cat["tcp.tcp_flags_ts"] == [ABSENT, "1b", ABSENT, "02"]
    assert num["flow.pkts_toserver"][3] == 1 and num["flow.bytes_toclient"][3] == 54
    assert batch.keys.tolist()[0] == "10.0.0.10"
    assert batch.timestamps[0] == pytest.approx(T0, abs=1e-3)


def test_goflow2_lines_parse_with_nanosecond_times_and_v5_records(tmp_path):
    rng = np.random.default_rng(1)
    path = write_lines(tmp_path / "flows.json", [goflow2_flow(rng, 1, "ipfix"), goflow2_flow(rng, 2, "v5"),
                                                 goflow2_flow(rng, 3, "scan")])  # fmt: skip
    batch = read_records(path, builtin_schema("netflow"))
    assert not batch.rejected and len(batch) == 3
    cat = {name: batch.categorical[:, j].tolist() for j, name in enumerate(batch.schema.categorical)}
    assert cat["tcp_flags"] == ["27", ABSENT, "2"] and cat["etype"] == ["IPv4", ABSENT, "IPv4"]
    assert batch.timestamps.tolist() == pytest.approx([T0 + 0.5, T0 + 1.0, T0 + 1.5])
    assert batch.keys.tolist() == ["10.1.1.11", "10.1.2.12", "10.1.3.13"]


def test_a_bad_line_is_rejected_with_its_line_and_the_rest_parse(tmp_path):
    rng = np.random.default_rng(1)
    good = json.dumps(eve_flow(rng, 0, "dns"))
    path = tmp_path / "eve.json"
    path.write_text(f"{good}\n{{not json\n[1, 2]\n{good}\n")
    batch = read_records(path, builtin_schema("suricata-flow"))
    assert len(batch) == 2
    assert [(e.where, str(e).split(": ", 1)[-1][:20]) for e in batch.rejected] == [
        ("eve.json line 2", "not valid JSON (Expe"),
        ("eve.json line 3", "a JSON line must be "),
    ]


def _messages(records: list[dict]) -> list[InputMessage]:
    return [InputMessage("eve", 0, i, None, json.dumps(r).encode(), 0) for i, r in enumerate(records)]


def test_the_service_reads_untagged_exporter_records_when_told_to():
    """Suricata and goflow2 do not write a ``schema`` field: by default such a record is dead-lettered with
    the flag that accepts it; with ``schema_field="optional"`` it is scored as the model's schema, nested
    objects read by path and absent optional fields as absent. A record tagged with another schema is
    still refused."""
    rng = np.random.default_rng(2)
    records = [eve_flow(rng, i, k) for i, k in enumerate(("dns", "https", "ping", "scan"))]
    schema = builtin_schema("suricata-flow")
    batch, _, dead = decode_messages(_messages(records), schema, max_bytes=65_536, allow_extra_fields=True)
    assert len(batch) == 0 and {d.reason for d in dead} == {"wrong_schema"}
    assert "untagged records need --schema-field optional" in dead[0].detail
    other = {**records[0], "schema": "kdd"}
    batch, _kept, dead = decode_messages(_messages([*records, other]), schema, max_bytes=65_536,
                                        allow_extra_fields=True, schema_field="optional")  # fmt: skip
    assert len(batch) == 4 and [d.reason for d in dead] == ["wrong_schema"]
    from_file = {name: batch.categorical[:, j].tolist() for j, name in enumerate(schema.categorical)}
    assert from_file["tcp.tcp_flags_tc"] == [ABSENT, "1b", ABSENT, "14"]
    assert batch.numeric[1, schema.numeric.index("flow.pkts_toclient")] == records[1]["flow"]["pkts_toclient"]
    # without --allow-extra-fields the exporter's other fields (flow_id, flow.start, ...) are named
    _, _, dead = decode_messages(_messages(records[:1]), schema, max_bytes=65_536, schema_field="optional")
    assert dead[0].reason == "unexpected_field" and "'community_id'" in dead[0].detail


def test_a_record_missing_a_required_field_names_it():
    rng = np.random.default_rng(3)
    rec = eve_flow(rng, 0, "https")
    del rec["flow"]["bytes_toserver"], rec["tcp"]
    _, _, dead = decode_messages(_messages([rec]), builtin_schema("suricata-flow"), max_bytes=65_536,
                                 allow_extra_fields=True, schema_field="optional")  # fmt: skip
    assert dead[0].reason == "missing_field"
    assert "'flow.bytes_toserver'" in dead[0].detail and "tcp" not in dead[0].detail


@pytest.mark.parametrize(
    ("schema", "make", "normal_kinds"),
    [("suricata-flow", eve_flow, ("dns", "https", "ping")), ("goflow2", goflow2_flow, ("ipfix",))],
    ids=["suricata", "goflow2"],
)
def test_train_and_eval_on_exporter_files(schema, make, normal_kinds, tmp_path, capsys):
    """The commands a user runs, on files in the exporter's format: train on benign flows, evaluate on a
    later capture with a port scan in it. The scan is what these features can see (one SYN, one RST, to
    ports normal traffic never uses), so a small model trained for seconds ranks it above every normal flow."""
    train_file = write_lines(tmp_path / "train.json", labelled(make, 1_200, 0, normal_kinds, seed=0))
    test_file = write_lines(tmp_path / "test.json", labelled(make, 600, 60, normal_kinds, seed=1))
    model = tmp_path / "model"
    assert main(["train", "--schema", schema, "--data", str(train_file), "--out", str(model), "--epochs", "20",
                 "--hidden", "32", "--members", "1", "--quiet"]) == 0  # fmt: skip
    report = tmp_path / "report"
    assert main(["eval", "--model", str(model), "--schema", schema, "--data", str(test_file), "--out",
                 str(report), "--no-pictures", "--quiet"]) == 0  # fmt: skip
    result = json.loads((report / "report.json").read_text())
    row = result["detectors"][0] if "detectors" in result else result
    assert row["records"] == 660 and row["auroc"] > 0.99, row


@pytest.mark.parametrize(
    ("make", "normal_kinds", "timestamp", "kind", "optional"),
    [
        (
            eve_flow,
            ("dns", "https", "ping"),
            "timestamp",
            "datetime",
            {"app_proto", "dest_port", "tcp.tcp_flags_ts"},
        ),
        (goflow2_flow, ("ipfix",), "time_flow_start_ns", "epoch_ns", {"tcp_flags"}),
    ],
    ids=["suricata", "goflow2"],
)
def test_schema_infer_drafts_a_json_lines_schema_that_trains(make, normal_kinds, timestamp, kind, optional, tmp_path,
                                                             capsys):  # fmt: skip
    """``schema infer`` on JSON lines: nested objects by dotted names, fields some records lack listed as
    optional, the time column and its unit (ISO text; goflow2's nanoseconds) and the label found; the
    draft then trains and evaluates through the commands a user runs."""
    import tomllib

    data = write_lines(tmp_path / "flows.json", labelled(make, 1_200, 60, normal_kinds))
    out = tmp_path / "draft.toml"
    assert main(["schema", "infer", "--data", str(data), "--out", str(out)]) == 0
    assert "1,260 of 1,260 sampled rows parse with it" in capsys.readouterr().err
    draft = tomllib.loads(out.read_text())
    assert draft["format"] == "json" and draft["timestamp"] == timestamp and draft["timestamp_kind"] == kind
    assert optional <= set(draft["optional_columns"]), draft["optional_columns"]
    assert draft["label"] == "label" and draft["normal_labels"] == ["benign"]
    if make is eve_flow:
        assert "flow.bytes_toserver" in draft["numeric"] and "dest_port" in draft["categorical"]
    model = tmp_path / "model"
    assert main(["train", "--schema", str(out), "--data", str(data), "--out", str(model), "--epochs", "2",
                 "--hidden", "8", "--members", "1", "--quiet"]) == 0  # fmt: skip
    report = tmp_path / "report"
    assert main(["eval", "--model", str(model), "--schema", str(out), "--data", str(data), "--out", str(report),
                 "--no-pictures", "--quiet"]) == 0  # fmt: skip
    assert json.loads((report / "report.json").read_text())["records"] == 1_260


def test_every_flowsentinel_command_in_the_readme_parses():
    """The README's pipeline commands (the exporters' among them) name flags that exist."""
    import re
    import shlex

    from flowsentinel.cli import build_parser

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #", 1)[0].strip()
            if line.startswith("flowsentinel "):
                commands.append(shlex.split(line)[1:])
    assert any("--schema-field" in c for c in commands) and len(commands) >= 4
    parser = build_parser()
    for argv in commands:
        parser.parse_args(argv)  # exits 2 on an unknown flag


@pytest.mark.parametrize("schema", ["suricata-flow", "goflow2", "cicflowmeter", "zeek-conn"])
def test_a_replayed_record_reads_back_with_its_time_in_the_detector(schema, tmp_path):
    """``produce`` writes each record's time as its schema reads it (ISO text, epoch ms/ns or seconds):
    seconds in a date-time field were dead-lettered as bad_timestamp by ``detect``, so a replayed CIC or
    Suricata file never scored."""
    from flowsentinel.producers.publisher import batch_to_records

    rng = np.random.default_rng(4)
    if schema == "suricata-flow":
        path = write_lines(
            tmp_path / "f.json", [eve_flow(rng, i, k) for i, k in enumerate(("dns", "https", "ping"))]
        )
    elif schema == "goflow2":
        path = write_lines(tmp_path / "f.json", [goflow2_flow(rng, i, "ipfix") for i in range(3)])
    elif schema == "zeek-conn":
        path = write_lines(tmp_path / "f.json", [{"ts": T0 + i * 0.25, "id.orig_h": "10.0.0.1", "proto": "tcp",
                                                  "conn_state": "SF", "id.resp_p": 80, "duration": 0.5,
                                                  "orig_bytes": 10, "resp_bytes": 20, "orig_pkts": 2,
                                                  "resp_pkts": 2, "orig_ip_bytes": 90, "resp_ip_bytes": 100,
                                                  "missed_bytes": 0, "history": "ShADadFf", "service": "http"}
                                                 for i in range(3)])  # fmt: skip
    else:  # a real CICFlowMeter file (Timestamp as date-time text)
        from tests.support import shared_data

        path = shared_data("cicids2017-improved-sample/Botnet_736.csv.gz")
    batch = read_records(path, builtin_schema(schema), limit=200)
    assert not batch.rejected
    records = batch_to_records(batch)
    back, _, dead = decode_messages(_messages(records), batch.schema, max_bytes=65_536)
    assert not dead, dead[0].detail
    np.testing.assert_allclose(back.timestamps, batch.timestamps, rtol=0, atol=1e-6)

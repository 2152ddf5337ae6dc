from __future__ import annotations

import gzip
import json

import pytest

from flowsentinel.detector.errors import SchemaError
from flowsentinel.detector.schema import KDD_FEATURES, builtin_schema
from flowsentinel.producers.files import iter_batches, read_records
from tests.support import shared_data

KDD_LINE = "0,tcp,http,SF,215,45076,0,0,0,0,0,1,0,0,0,0,0,0,0,0,0,0,1,1,0.00,0.00,0.00,0.00,1.00,0.00,0.00,0,0,0.00,0.00,0.00,0.00,0.00,0.00,0.00,0.00"


def test_kdd99_plain_and_nsl_gzip_with_difficulty(tmp_path):
    plain = tmp_path / "kdd.csv"
    plain.write_text(f"{KDD_LINE},normal.\n{KDD_LINE},smurf.\n")
    nsl = tmp_path / "nsl.txt.gz"
    with gzip.open(nsl, "wt") as fh:
        fh.write(f"{KDD_LINE},normal,21\n{KDD_LINE},neptune,18\n")
    s = builtin_schema("kdd")
    a, b = read_records(plain, s), read_records(nsl, s)
    assert a.labels.tolist() == ["normal", "smurf"] == [b.labels[0], "smurf"]
    assert b.labels.tolist() == ["normal", "neptune"]
    assert a.numeric[0, list(s.numeric).index("dst_bytes")] == 45076


def test_malformed_rows_are_reported_with_line_and_the_rest_kept(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text(
        f"{KDD_LINE},normal.\n"
        "0,tcp,http\n"  # truncated row
        f"{KDD_LINE.replace('215', 'abc', 1)},normal.\n"
        f"{KDD_LINE},normal.\n"
    )
    b = read_records(f, builtin_schema("kdd"))
    assert len(b) == 2
    assert [e.where for e in b.rejected] == ["bad.csv line 2", "bad.csv line 3"]
    assert "expected 42 or 43 fields, got 3" in str(b.rejected[0])
    assert str(b.rejected[1]) == "bad.csv line 3: field 'src_bytes' = 'abc': not a number"


def test_truncated_gzip_keeps_what_was_read_and_reports_it(tmp_path):
    full = gzip.compress(("".join(f"{KDD_LINE},normal.\n" for _ in range(3000))).encode())
    f = tmp_path / "cut.gz"
    f.write_bytes(full[: len(full) // 2])
    b = read_records(f, builtin_schema("kdd"))
    assert 0 < len(b) < 3000
    assert "truncated or corrupt" in str(b.rejected[-1])


def test_chunks_and_limit(tmp_path):
    f = tmp_path / "many.csv"
    f.write_text("".join(f"{KDD_LINE},normal.\n" for _ in range(25)))
    chunks = list(iter_batches(f, builtin_schema("kdd"), chunk_rows=10))
    assert [len(c) for c in chunks] == [10, 10, 5]
    assert chunks[2].positions[0] == "many.csv line 21"
    assert len(read_records(f, builtin_schema("kdd"), limit=7)) == 7


def test_max_rows_counts_unreadable_rows_too(tmp_path):
    """``limit`` counts data rows, so a file of nothing but bad rows is read to its end; ``max_rows`` (the
    look produce takes at a file before it connects) stops after that many rows of any kind."""
    f = tmp_path / "mixed.csv"
    f.write_text("not,a,record\n" * 30 + f"{KDD_LINE},normal.\n" * 5)
    s = builtin_schema("kdd")
    assert len(read_records(f, s, limit=3).rejected) == 30
    first = list(iter_batches(f, s, max_rows=12))
    assert sum(len(b) for b in first) == 0 and sum(len(b.rejected) for b in first) == 12
    first = list(iter_batches(f, s, max_rows=32))
    assert sum(len(b) for b in first) == 2 and sum(len(b.rejected) for b in first) == 30


def test_cic_csv_with_original_column_names(tmp_path):
    s = builtin_schema("cicflowmeter")
    names = [" " + (s.aliases.get(f, (f,))[0]) for f in s.numeric] + [
        " Destination Port",
        " Protocol",
        " Source IP",
        " Timestamp",
        " Label",
    ]
    values = ["1"] * len(s.numeric) + ["443", "6", "10.0.0.1", "3/7/2017 8:55", "BENIGN"]
    f = tmp_path / "Monday-WorkingHours.pcap_ISCX.csv"
    f.write_text(",".join(names) + "\n" + ",".join(values) + "\n")
    b = read_records(f, s)
    assert len(b) == 1 and b.keys.tolist() == ["10.0.0.1"] and b.is_normal.tolist() == [True]


def test_csv_with_wrong_header_is_a_schema_error(tmp_path):
    f = tmp_path / "other.csv"
    f.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(SchemaError, match="no column for field"):
        read_records(f, builtin_schema("cicflowmeter"))


ZEEK_FIELDS = [
    "ts",
    "uid",
    "id.orig_h",
    "id.orig_p",
    "id.resp_h",
    "id.resp_p",
    "proto",
    "service",
    "duration",
    "orig_bytes",
    "resp_bytes",
    "conn_state",
    "local_orig",
    "local_resp",
    "missed_bytes",
    "history",
    "orig_pkts",
    "orig_ip_bytes",
    "resp_pkts",
    "resp_ip_bytes",
    "tunnel_parents",
]


def test_zeek_tsv_with_unset_fields(tmp_path):
    rows = [
        [
            "1331901000.0",
            "C1",
            "192.168.1.2",
            "5353",
            "224.0.0.251",
            "5353",
            "udp",
            "dns",
            "-",
            "-",
            "-",
            "S0",
            "-",
            "-",
            "0",
            "D",
            "1",
            "73",
            "0",
            "0",
            "(empty)",
        ],
        [
            "1331901001.5",
            "C2",
            "192.168.1.3",
            "4000",
            "10.0.0.1",
            "80",
            "tcp",
            "http",
            "0.5",
            "300",
            "9000",
            "SF",
            "-",
            "-",
            "0",
            "ShADadFf",
            "8",
            "720",
            "10",
            "9520",
            "(empty)",
        ],
        ["1331901002.0", "C3", "192.168.1.3"],  # truncated
    ]
    text = "#separator \\x09\n#set_separator\t,\n#fields\t" + "\t".join(ZEEK_FIELDS) + "\n#types\t...\n"
    text += "".join("\t".join(r) + "\n" for r in rows) + "#close\t2012-03-16-12-00-00\n"
    f = tmp_path / "conn.log"
    f.write_text(text)
    b = read_records(f, builtin_schema("zeek-conn"))
    assert len(b) == 2
    assert b.keys.tolist() == ["192.168.1.2", "192.168.1.3"]
    assert b.timestamps.tolist() == [1331901000.0, 1331901001.5]
    assert b.repaired["duration"] == 1
    assert "conn.log line 7" in str(b.rejected[0]) and "expected 21 fields, got 3" in str(b.rejected[0])


def test_zeek_json_lines(tmp_path):
    rec = {
        "ts": 1.5,
        "id.orig_h": "10.1.1.1",
        "id.resp_p": 22,
        "proto": "tcp",
        "service": "ssh",
        "duration": 1.2,
        "orig_bytes": 10,
        "resp_bytes": 20,
        "conn_state": "SF",
        "missed_bytes": 0,
        "history": "ShAdDaFf",
        "orig_pkts": 5,
        "orig_ip_bytes": 300,
        "resp_pkts": 4,
        "resp_ip_bytes": 200,
    }
    f = tmp_path / "conn.json"
    f.write_text(json.dumps(rec) + "\n{not json\n" + json.dumps({**rec, "orig_bytes": -3}) + "\n")
    b = read_records(f, builtin_schema("zeek-conn"))
    assert len(b) == 1
    assert b.categorical[0].tolist() == ["tcp", "ssh", "SF", "22", "ShAdDaFf"]
    assert "line 2: not valid JSON" in str(b.rejected[0])
    assert "negative value" in str(b.rejected[1])


def test_unreadable_file_is_named(tmp_path):
    with pytest.raises(SchemaError, match="cannot read data file"):
        read_records(tmp_path / "nope.csv", builtin_schema("kdd"))


# --------------------------------------------------------------------------- the real data sets
@pytest.mark.data
@pytest.mark.parametrize(
    ("relative", "normal_label"),
    [
        ("nsl-kdd/KDDTest+.txt.gz", "normal"),
        ("nsl-kdd/KDDTrain+_20Percent.txt.gz", "normal"),
        ("kddcup99/corrected.gz", "normal"),
        ("kddcup99/kddcup.data_10_percent.gz", "normal"),
    ],
)
def test_real_kdd_files_parse_cleanly(relative, normal_label):
    path = shared_data(relative)
    b = read_records(path, builtin_schema("kdd"), limit=5000)
    assert len(b) == 5000 and not b.rejected
    assert normal_label in set(b.labels.tolist())
    assert len(KDD_FEATURES) == b.numeric.shape[1] + b.categorical.shape[1]


@pytest.mark.data
def test_real_cicids2017_improved_sample_parses_cleanly():
    path = shared_data("cicids2017-improved-sample/DDoS_5000.csv.gz")
    b = read_records(path, builtin_schema("cicflowmeter"))
    assert len(b) == 5000 and not b.rejected
    assert set(b.labels.tolist()) == {"DDoS"} and not b.is_normal.any()
    assert b.timestamps.min() > 1.49e9  # July 2017

"""Messages an attacker could put on the input topic: the generator behind the fuzzing tests (driven by
hypothesis) and ``benchmarks/poison.py --fuzz`` (a long run through the real broker).

Each message starts from a good KDD record and is broken in one of many ways, or is left whole; keys are
absent, text, invalid UTF-8 or long. A seeded ``random.Random`` drives every choice, so a seed replays an
example.
"""

from __future__ import annotations

import json
import random
from typing import Any

MAX_BYTES = 65_536  # the service's default max_record_bytes

TRICKY_TEXT = (
    "\ud800evil",  # a lone surrogate: valid in JSON, not encodable as UTF-8
    "\udfff",
    "a\x00b",
    "line\nINFO forged log line",
    "\u202eevil",  # right-to-left override
    "١٢٣",  # Arabic-Indic digits
    "1_000",
    "５００",  # full-width digits
    " 12 ",
    "",
    " ",
    "NaN",
    "-inf",
    "1e999",
    "0x10",
    "💥",
    "\\",
    '"',
)


class Raw(str):
    """JSON text to put into a message as it is (a value nested deeper than ``json.dumps`` can write)."""


def nested(rng: random.Random, depth: int) -> Raw:
    opens = "".join(rng.choice(["[", '{"a":']) for _ in range(depth))
    closes = "".join("]" if c == "[" else "}" for c in reversed(opens.replace('{"a":', "{")))
    return Raw(opens + json.dumps(rng.choice([1, "x", None, 1.5])) + closes)


def dumps(record: dict[str, Any]) -> str:
    """``json.dumps``, with every :class:`Raw` value written as the JSON text it holds."""
    raws = {}
    for k, v in record.items():
        if isinstance(v, Raw):
            raws[k] = v
            record = {**record, k: f"@@raw:{len(raws)}@@"}
    text = json.dumps(record)
    for i, v in enumerate(raws.values(), start=1):
        text = text.replace(f'"@@raw:{i}@@"', v, 1)
    return text


def tricky_value(rng: random.Random) -> Any:
    kind = rng.randrange(14)
    if kind == 0:
        return nested(rng, rng.choice([1, 2, 50, 1000, 1020]))
    if kind == 1:
        return rng.choice(TRICKY_TEXT)
    if kind == 2:
        return "".join(chr(rng.randrange(0x110000)) for _ in range(rng.randrange(1, 20)))
    if kind == 3:
        return "9" * rng.choice([20, 400, 5000, 30_000])
    if kind == 4:
        return int("9" * rng.choice([19, 20, 40, 400]))
    if kind == 5:
        return rng.choice([float("nan"), float("inf"), -float("inf"), 1e308, -0.0, 5e-324])
    if kind == 6:
        return rng.choice([True, False, None])
    if kind == 7:
        return -rng.randrange(1, 10**6)
    if kind == 8:
        return rng.uniform(-1e9, 1e9)
    if kind == 9:
        return "x" * rng.choice([1_000, 30_000, 60_000])
    if kind == 10:
        return rng.choice([[], {}, [1, 2], {"a": 1}])
    if kind == 11:
        return rng.randrange(0, 2**63)
    if kind == 12:
        return rng.choice(["2026-12-03T10:00:00Z", "3/7/2017 8:55", "yesterday", 1.7e9, 1.7e12, -5])
    return rng.random() * 100


def fuzz_value(rng: random.Random, good: dict[str, Any]) -> bytes | None:
    """One message value: ``good`` broken in one way (or whole)."""
    kind = rng.randrange(16)
    r = dict(good)
    if kind == 0:
        return None  # a tombstone
    if kind == 1:
        return rng.randbytes(rng.randrange(0, 300))
    if kind in (2, 3, 4, 5):  # one field, or a few, replaced
        for _ in range(rng.choice([1, 1, 1, 3])):
            r[rng.choice(list(r))] = tricky_value(rng)
    elif kind == 6:
        del r[rng.choice(list(r))]
    elif kind == 7:
        r[rng.choice(["comment", "x" * 300, "\ud800", "", "schema "])] = tricky_value(rng)
    elif kind == 8:
        r["schema"] = rng.choice(["cicflowmeter", "KDD", "", None, 1, ["kdd"], nested(rng, 900)])
    elif kind == 9:
        r["schema_version"] = tricky_value(rng)
    elif kind == 10:
        text = dumps(r)
        return text[: rng.randrange(len(text))].encode()  # cut short
    elif kind == 11:
        data = bytearray(dumps(r).encode())
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    elif kind == 12:
        return rng.choice([json.dumps([r]), '"text"', "1", "null", nested(rng, 3)]).encode()
    elif kind == 13 and rng.random() < 0.25:  # (rarer: a long run keeps every message in the broker)
        r["label"] = "x" * (MAX_BYTES + 10)  # oversized
    elif kind == 14:  # many fields
        r.update({f"f{i}": i for i in range(rng.choice([100, 3000]))})
    # kind 15 (and most of 13): the good record, whole
    return dumps(r).encode()  # JSON escapes any surrogate: the bytes are ASCII


def fuzz_key(rng: random.Random) -> bytes | None:
    kind = rng.randrange(6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.randbytes(rng.randrange(1, 40))  # mostly invalid UTF-8
    if kind == 2:
        return b"\xed\xa0\x80evil"  # a surrogate, UTF-8-encoded: invalid
    if kind == 3:
        return b"k" * (200_000 if rng.random() < 0.05 else 5_000)
    return f"10.0.0.{rng.randrange(256)}".encode()


def fuzz_messages(
    rng: random.Random, goods: list[dict[str, Any]], n: int
) -> list[tuple[bytes | None, bytes | None]]:
    """``n`` (key, value) pairs, each from a random good record."""
    return [(fuzz_key(rng), fuzz_value(rng, rng.choice(goods))) for _ in range(n)]

"""A schema file drafted from a sample of a CSV or JSON-lines file, for the user to read, edit and use.

:func:`draft_schema` looks at each column of a sample and decides, with the reason written beside it in the
draft: a numeric feature (every value a number, or a token meaning "unset" or a non-finite number; signed
where negatives occur), a categorical feature (text with few distinct values; protocols and destination
ports, numbers that are codes), the entity key (a source address), the timestamp (epoch seconds or
date-time text), the label (named, or the text column holding ``normal``/``benign``) with its values and the
normal ones named, or left out: identifiers (one value per row, flow ids, source ports), constant
columns, other addresses, columns after the label in a header-less file (NSL-KDD's difficulty: ground
truth, not traffic) and names that say they are ground truth (``attack_cat``). JSON lines come as dotted
field names (nested objects flattened) with the count of records that lack each one: a feature some
records lack is listed in ``optional_columns`` (it reads as absent there). Nothing is read from disk
here: the caller passes the header and the rows (``flowsentinel schema infer`` reads them).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from flowsentinel.detector.errors import SchemaError
from flowsentinel.detector.schema import Schema, normalize_name

UNSET_TOKENS = ("-", "(empty)", "?", "na", "n/a", "null", "none", "")
NONFINITE_TOKENS = ("nan", "inf", "-inf", "+inf", "infinity", "-infinity", "+infinity")
# normalised names (normalize_name) of each role
LABEL_NAMES = ("label", "labels", "class", "attack", "tag", "classification")
TRUTH_NAMES = ("attackcat", "attackcategory", "attemptedcategory", "category", "subcategory", "difficulty",
               "difficultylevel", "detailedlabel", "tunnelparents")  # fmt: skip
KEY_NAMES = ("srcip", "sourceip", "srcaddr", "sourceaddress", "srcaddress", "saddr", "idorigh", "srchost",
             "ipsrc", "ipv4srcaddr", "srcipaddr", "origh", "src")  # fmt: skip
TIME_NAMES = ("ts", "timestamp", "time", "stime", "starttime", "flowstarttime", "firstseen", "timereceived",
              "start", "datetime", "date")  # fmt: skip
ID_NAMES = ("id", "uid", "flowid", "index", "no", "rowid", "recordid", "connuid", "communityid", "sequencenum",
            "seqnum")  # fmt: skip
SOURCE_PORT_NAMES = ("srcport", "sourceport", "sport", "idorigp", "origp", "l4srcport", "srcpt")
CODE_NAMES = ("proto", "protocol", "protocolname", "ipproto", "dstport", "destport", "destinationport", "dport",
              "idrespp", "respp", "l4dstport", "dstpt", "service", "state", "connstate", "flags", "tcpflags")  # fmt: skip
NORMAL_VALUES = re.compile(r"^(normal|benign|legitimate|clean|background-?normal)\.?$", re.I)
MAX_CATEGORIES = 1_000
TIME_KINDS = {
    "date-time": "datetime",
    "milliseconds": "epoch_ms",
    "nanoseconds": "epoch_ns",
    "seconds": "epoch",
}


@dataclass
class Column:
    name: str
    role: str  # numeric, categorical, key, timestamp, label, left out
    why: str
    signed: bool = False
    unset: set[str] = field(default_factory=set)
    nonfinite: bool = False


@dataclass
class Draft:
    """The drafted schema (:meth:`schema` validates it) and what was decided for each column and why."""

    name: str
    has_header: bool
    columns: list[Column]
    delimiter: str = ","
    timestamp_kind: str = "epoch"
    label_values: list[tuple[str, int]] = field(default_factory=list)
    normal_labels: list[str] = field(default_factory=list)
    label_strip: str = ""
    rows: int = 0
    format: str = "csv"  # or "json": JSON lines
    optional: list[str] = field(default_factory=list)  # fields some sampled records lack (JSON lines)

    def by_role(self, role: str) -> list[Column]:
        return [c for c in self.columns if c.role == role]

    def one(self, role: str) -> str | None:
        found = self.by_role(role)
        return found[0].name if found else None

    def as_dict(self) -> dict[str, Any]:
        numeric = self.by_role("numeric")
        unset = sorted({t for c in numeric for t in c.unset})
        out: dict[str, Any] = {"name": self.name, "version": 1, "format": self.format}
        if self.format == "csv":
            out.update(delimiter=self.delimiter, has_header=self.has_header)
        out.update({
            "numeric": [c.name for c in numeric],
            "categorical": [c.name for c in self.by_role("categorical")],
            "signed": [c.name for c in numeric if c.signed],
            "unset_tokens": unset,
            "nonfinite": "zero" if any(c.nonfinite for c in numeric) else "reject",
        })  # fmt: skip
        if self.optional:
            out["optional_columns"] = list(self.optional)
        if not self.has_header:
            out["columns"] = [c.name for c in self.columns]
        for role in ("key", "timestamp", "label"):
            if (name := self.one(role)) is not None:
                out[role] = name
        if self.one("timestamp"):
            out["timestamp_kind"] = self.timestamp_kind
        if self.one("label"):
            out["normal_labels"] = list(self.normal_labels)
            if self.label_strip:
                out["label_strip"] = self.label_strip
        return out

    def schema(self) -> Schema:
        return Schema.from_dict(self.as_dict(), source=f"drafted schema {self.name!r}")

    def toml(self, source: str, out: str = "") -> str:
        """The draft as a commented schema file (``out``: where it will be written, for the hint)."""
        d = self.as_dict()
        lines = [
            f"# Drafted by `flowsentinel schema infer` from {self.rows:,} rows of {source}.",
            "# Read every line: the reasons are guesses from the sample. Then:",
            f"#   flowsentinel train --schema {out or self.name + '.toml'} --data {source} --out models/{self.name}",
            f"name = {_q(d['name'])}",
            "version = 1",
            f"format = {_q(d['format'])}",
        ]
        if self.format == "csv":
            lines += [f"delimiter = {_q(d['delimiter'])}", f"has_header = {str(d['has_header']).lower()}"]
        else:
            lines.append("# JSON lines: nested objects are read by dotted names (flow.bytes_toserver)")
        if "columns" in d:
            lines.append("# no header row: these names are made up; rename them here and below")
            lines.append(f"columns = {_list(d['columns'])}")
        for role in ("key", "timestamp", "label"):
            col = next((c for c in self.columns if c.role == role), None)
            if col is None:
                hint = {"key": "no source-address column found: all records form one stream, no per-host windows",
                        "timestamp": "no timestamp column found", "label": "no label column found"}[role]  # fmt: skip
                lines.append(f"# {role} = ?   ({hint})")
            else:
                lines.append(f"{role} = {_q(col.name)}   # {col.why}")
        if "timestamp_kind" in d:
            lines.append(f"timestamp_kind = {_q(d['timestamp_kind'])}")
        if "normal_labels" in d:
            seen = ", ".join(f"{v!r} {n:,}" for v, n in self.label_values[:12])
            more = f" and {len(self.label_values) - 12} more" if len(self.label_values) > 12 else ""
            lines.append(f"# labels in the sample: {seen}{more}")
            if not self.normal_labels:
                lines.append(
                    "# none looks normal: name the normal one(s) below, or training has nothing to learn"
                )
            lines.append(f"normal_labels = {_list(d['normal_labels'])}")
            if "label_strip" in d:
                lines.append(f"label_strip = {_q(d['label_strip'])}   # the labels end with it")
        lines.append("")
        lines.append("numeric = [")
        lines += [f"  {_q(c.name)},   # {c.why}" for c in self.by_role("numeric")]
        lines.append("]")
        lines.append("categorical = [")
        lines += [f"  {_q(c.name)},   # {c.why}" for c in self.by_role("categorical")]
        lines.append("]")
        if "optional_columns" in d:
            lines.append(f"optional_columns = {_list(d['optional_columns'])}   # some sampled records lack them: "
                         "read as '(absent)' (0 for a number) there")  # fmt: skip
        lines.append(f"signed = {_list(d['signed'])}   # numeric fields with negative values in the sample")
        lines.append(f"unset_tokens = {_list(d['unset_tokens'])}   # text meaning 'not set': repaired to 0")
        why = "non-finite numbers seen: repaired to 0 (counted)" if d["nonfinite"] == "zero" else "none seen"
        lines.append(f"nonfinite = {_q(d['nonfinite'])}   # {why}")
        left = self.by_role("left out")
        if left:
            lines.append("")
            lines.append("# left out (add a name to numeric or categorical to use it):")
            lines += [f"#   {c.name!r}: {c.why}" for c in left]
        return "\n".join(lines) + "\n"


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _list(items: Sequence[str]) -> str:
    return "[" + ", ".join(_q(i) for i in items) + "]"


def as_number(text: str) -> float | None:
    """``text`` as a number (inf and nan included), or None where it is not one."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_datetime(values: Sequence[str]) -> bool:
    import pandas as pd

    try:
        parsed = pd.to_datetime(pd.Series(list(values[:200])), errors="coerce", format="mixed")
    except (ValueError, TypeError):
        return False
    return bool(parsed.notna().mean() >= 0.95)


def draft_schema(
    header: Sequence[str] | None,
    rows: Sequence[Sequence[str]],
    *,
    name: str = "my-flows",
    label: str | None = None,
    delimiter: str = ",",
    absent: dict[str, int] | None = None,
) -> Draft:
    """A draft schema for rows of a CSV file (``header`` None: the file has none). ``label`` names the
    label column (a header name, or ``col_N`` in a header-less file); otherwise it is guessed. ``absent``
    (JSON lines: how many records lack each field, where they hold "") makes a JSON-lines draft."""
    if not rows:
        raise SchemaError("schema infer: the sample has no rows to look at")
    width = len(header) if header is not None else max(len(r) for r in rows)
    names = list(header) if header is not None else [f"col_{i}" for i in range(width)]
    rows = [r for r in rows if len(r) == width]
    if not rows:
        raise SchemaError(f"schema infer: no row of the sample has the header's {width} fields")
    values = [[r[i].strip() for r in rows] for i in range(width)]
    norm = [normalize_name(n) for n in names]
    label_idx = _label_column(names, norm, values, label)
    cols: list[Column] = []
    key_found = False
    for i, (col_name, key, vals) in enumerate(zip(names, norm, values, strict=True)):
        col = _column(col_name, key, vals, len(rows))
        if i == label_idx:
            col = Column(
                col_name, "label", "the label column" + (" (given)" if label else " (by name or values)")
            )
        elif label_idx is not None and header is None and i > label_idx:
            col = Column(col_name, "left out", "after the label in a header-less file: usually ground truth "
                         "detail (NSL-KDD's difficulty), not traffic")  # fmt: skip
        elif key in TRUTH_NAMES:
            col = Column(col_name, "left out", "its name says ground truth, not traffic")
        elif col.role == "key?":
            col.role = "left out" if key_found else "key"
            key_found = True
            if col.role == "left out":
                col.why = "another address (the first source address is the key)"
        cols.append(col)
    # one timestamp: one named as such (ts, timestamp), else a flow's start where several time columns are
    # offered (goflow2: time_received_ns, time_flow_start_ns, time_flow_end_ns), else the first; the others
    # are left out
    times = [c for c in cols if c.role == "timestamp?"]
    named = [c for c in times if normalize_name(c.name) in TIME_NAMES]
    starts = [c for c in times if any(w in normalize_name(c.name) for w in ("start", "first"))]
    chosen = (named or starts or times)[0] if times else None
    for c in times:
        c.role = "timestamp" if c is chosen else "left out"
        if c is not chosen:
            c.why = "another time column"
    # an address column not named as a source becomes the key only where no source was found
    if not key_found:
        for c in cols:
            if c.role == "address":
                c.role, c.why, key_found = (
                    "key",
                    "the first column of IP addresses (no source-address name)",
                    True,
                )
                break
    for c in cols:
        if c.role == "address":
            c.role, c.why = "left out", "an address column: an identifier, not a feature"
    draft = Draft(name=name, has_header=header is not None, columns=cols, delimiter=delimiter, rows=len(rows))
    if absent is not None:
        draft.format = "json"
        for c in cols:
            if absent.get(c.name) and c.role in ("numeric", "categorical", "key"):
                draft.optional.append(c.name)
                c.unset.discard("")
                c.why = c.why.replace(
                    ", empty cells seen (rejected unless listed in unset_tokens)", ""
                ).replace(": empty cells seen (rejected unless listed in unset_tokens)", "")
                c.why += f"; absent from {absent[c.name]:,} of {len(rows):,} records: optional"
    ts = draft.one("timestamp")
    if ts is not None:
        kind = next(c for c in cols if c.name == ts).why
        draft.timestamp_kind = next((k for w, k in TIME_KINDS.items() if w in kind), "epoch")
    if label_idx is not None:
        counts = Counter(values[label_idx])
        draft.label_values = counts.most_common()
        strip = "." if counts and all(v.endswith(".") for v in counts) else ""
        draft.label_strip = strip
        draft.normal_labels = sorted(
            v.rstrip(strip) if strip else v for v in counts if NORMAL_VALUES.match(v)
        )
        if not draft.normal_labels and set(counts) <= {"0", "1"}:
            draft.normal_labels = ["0"]
    return draft


def _label_column(
    names: list[str], norm: list[str], values: list[list[str]], label: str | None
) -> int | None:
    if label is not None:
        for i, (n, k) in enumerate(zip(names, norm, strict=True)):
            if label == n or normalize_name(label) == k:
                return i
        shown = ", ".join(names[:8]) + (", …" if len(names) > 8 else "")
        raise SchemaError(f"schema infer: --label {label!r} is not a column of the file (columns: {shown})")
    for wanted in LABEL_NAMES:
        if wanted in norm:
            return norm.index(wanted)
    for i, vals in enumerate(values):  # a text column holding a normal-looking value
        distinct = set(vals)
        if len(distinct) <= 200 and any(NORMAL_VALUES.match(v) for v in distinct):
            return i
    return None


def _column(name: str, key: str, vals: list[str], n: int) -> Column:
    present = [v for v in vals if v.lower() not in UNSET_TOKENS]
    distinct = set(present)
    numbers: list[float] = []
    unset = {v for v in vals if v.lower() in UNSET_TOKENS}
    nonfinite = False
    text: list[str] = []
    for v in present:
        x = as_number(v)
        if x is None:
            text.append(v)
        elif not math.isfinite(x):
            nonfinite = True
        else:
            numbers.append(x)
    if not present:
        return Column(name, "left out", "never set in the sample")
    if key in ID_NAMES:
        return Column(name, "left out", "an identifier, by its name")
    unique_text = text and len(distinct) == n and n >= 50 and key not in TIME_NAMES
    if unique_text and not _all_ip(present) and not _is_datetime(present):
        return Column(name, "left out", "an identifier (a different text in every row)")
    if key in SOURCE_PORT_NAMES:
        return Column(name, "left out", "a source port: ephemeral, an identifier rather than a feature")
    ips = _all_ip(present)
    if ips:
        if key in KEY_NAMES or any(s in key for s in ("src", "source", "orig")):
            return Column(name, "key?", "a source address: windows are kept per key")
        return Column(name, "address", "")
    if key in TIME_NAMES or (not text and numbers and min(numbers) >= 1e8 and
                             any(t in key for t in ("time", "ts", "stamp"))):  # fmt: skip
        if not text and numbers:
            low, high = min(numbers), max(numbers)
            if low >= 1e8 and high <= 1e10:
                return Column(name, "timestamp?", "epoch seconds")
            if low >= 1e11 and high <= 1e13:
                return Column(name, "timestamp?", "epoch milliseconds")
            if low >= 1e17 and high <= 1e19:
                return Column(name, "timestamp?", "epoch nanoseconds")
            if key in TIME_NAMES:
                return Column(
                    name, "left out", "numbers of no epoch unit (seconds, ms or ns): check the column"
                )
        if _is_datetime(present):
            return Column(name, "timestamp?", "date-time text")
    if len(distinct) == 1:
        return Column(name, "left out", f"constant in the sample ({next(iter(distinct))!r})")
    if text and len(text) == len(present) and _is_datetime(present):
        return Column(name, "timestamp?", "date-time text")
    if not text:
        if key in CODE_NAMES and len(distinct) <= MAX_CATEGORIES:
            return Column(name, "categorical", f"numbers that are codes ({len(distinct)} distinct)")
        col = Column(name, "numeric", "numbers", unset=unset - {""} if unset else set(), nonfinite=nonfinite)
        col.signed = any(x < 0 for x in numbers)
        notes = []
        if col.signed:
            notes.append("negatives seen")
        if col.unset:
            notes.append(f"unset as {sorted(col.unset)}")
        if nonfinite:
            notes.append("non-finite values seen")
        if "" in unset:
            notes.append("empty cells seen (rejected unless listed in unset_tokens)")
        if notes:
            col.why += ": " + ", ".join(notes)
        return col
    if len(text) < 0.01 * len(present) and numbers:
        return Column(name, "left out", f"mostly numbers with text like {text[0]!r}: check the column")
    if len(distinct) > MAX_CATEGORIES:
        return Column(name, "left out", f"{len(distinct):,} distinct texts: an identifier, not a category")
    return Column(name, "categorical", f"text, {len(distinct)} distinct value(s)")


def _all_ip(values: list[str]) -> bool:
    sample = values[:200]
    return bool(sample) and sum(_is_ip(v) for v in sample) >= 0.95 * len(sample)

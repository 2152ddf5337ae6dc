"""Declarative record schemas and the one validation path every record goes through.

A :class:`Schema` says how a format names its fields, which are numeric or categorical, which field is the
entity key (a window is kept per key), the timestamp, the label and which label values mean *normal*.
:func:`parse_table` turns raw values (strings from a file, or values from JSON) into a :class:`RecordBatch`
of validated records plus one :class:`~detector.errors.RecordError` per rejected record.

Validation rules (documented in the README, applied identically to files and live records):

- a numeric value that is empty/absent is rejected (``missing value``), except that a schema may declare
  *unset tokens* (Zeek's ``-`` and ``(empty)``) which are repaired to 0 and counted as repaired;
- text that is not a number, or a boolean where a number belongs, is rejected (``not a number``);
- NaN and ±inf are rejected (``non-finite``), unless the schema sets ``nonfinite = "zero"`` (CICFlowMeter:
  its rate fields are NaN/Infinity when a flow lasted 0 µs), which repairs them to 0 and counts them;
- a negative value in a field that cannot be negative (every numeric field not listed as ``signed``)
  is rejected (``negative value``);
- a timestamp that does not parse, or is not between 1970 and 2100 in seconds since the epoch (a millisecond
  epoch, say), is rejected (``not a valid timestamp``); a record without one is not;
- a categorical value that is empty is rejected; an unseen category is *not* an error here — the feature
  encoder maps it to the unknown bucket and counts it.

>>> s = builtin_schema("kdd")
>>> s.numeric[0], s.categorical
('duration', ('protocol_type', 'service', 'flag'))
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

from flowsentinel.detector.errors import (
    BAD_TIMESTAMP,
    MISSING_VALUE,
    NEGATIVE_VALUE,
    NON_FINITE,
    WRONG_TYPE,
    RecordError,
    SchemaError,
)

# what a feature listed in optional_columns reads as where the data has no such column
ABSENT = "(absent)"
GLOBAL_KEY = "*"
"""Entity key used when a schema has no key field or a record lacks it: one shared window stream."""
# an entity key longer than this is shortened (see bounded_key): keys are held per window and sent in alerts,
# and a producer with a bug (or an attacker) must not make each one as large as a whole message
MAX_KEY_CHARS = 256
LATEST_TIMESTAMP_S = 4_102_444_800  # 2100-01-01T00:00:00Z: later is a unit mistake (ms or µs), not a time

Format = Literal["csv", "zeek", "json"]
TimestampKind = Literal["epoch", "epoch_ms", "epoch_ns", "datetime"]
_EPOCH_DIVISOR = {"epoch": 1.0, "epoch_ms": 1e3, "epoch_ns": 1e9}
NonFinite = Literal["reject", "zero"]


def normalize_name(name: str) -> str:
    """Header-name normal form used to match columns to fields: lower case, letters and digits only.

    >>> normalize_name(" Total Fwd Packets"), normalize_name("total_fwd_packets")
    ('totalfwdpackets', 'totalfwdpackets')
    """
    return re.sub(r"[^0-9a-z]", "", name.lower())


@dataclass(frozen=True)
class Schema:
    """A record format. Field names are canonical; ``aliases`` lists other spellings seen in files.

    Construct with :meth:`from_dict` (validates) or use :func:`builtin_schema`.
    """

    name: str
    version: int
    format: Format
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    has_header: bool = True
    columns: tuple[str, ...] = ()
    optional_columns: tuple[str, ...] = ()
    delimiter: str = ","
    key: str | None = None
    timestamp: str | None = None
    timestamp_kind: TimestampKind = "epoch"
    label: str | None = None
    normal_labels: frozenset[str] = frozenset()
    label_strip: str = ""
    signed: frozenset[str] = frozenset()
    unset_tokens: frozenset[str] = frozenset()
    nonfinite: NonFinite = "reject"
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_.-]{0,63}", self.name):
            raise SchemaError(f"schema name {self.name!r} must be lower-case letters, digits, '_', '-', '.'")
        if self.version < 1:
            raise SchemaError(f"schema {self.name}: version {self.version!r} must be >= 1")
        if self.format not in get_args(Format):
            raise SchemaError(f"schema {self.name}: format {self.format!r} must be 'csv', 'zeek' or 'json'")
        if not self.numeric and not self.categorical:
            raise SchemaError(f"schema {self.name}: needs at least one numeric or categorical field")
        seen: set[str] = set()
        for f in (*self.numeric, *self.categorical):
            if f in seen:
                raise SchemaError(f"schema {self.name}: field {f!r} is listed twice")
            seen.add(f)
        for role in ("key", "timestamp", "label"):
            value = getattr(self, role)
            if value is not None and value in seen:
                raise SchemaError(f"schema {self.name}: {role} field {value!r} is also a feature")
        unknown_signed = set(self.signed) - set(self.numeric)
        if unknown_signed:
            raise SchemaError(
                f"schema {self.name}: signed field {sorted(unknown_signed)[0]!r} is not numeric"
            )
        if self.timestamp_kind not in get_args(TimestampKind):
            raise SchemaError(
                f"schema {self.name}: timestamp_kind {self.timestamp_kind!r} must be 'epoch' (seconds), "
                "'epoch_ms', 'epoch_ns' or 'datetime'"
            )
        if self.nonfinite not in ("reject", "zero"):
            raise SchemaError(f"schema {self.name}: nonfinite {self.nonfinite!r} must be 'reject' or 'zero'")
        if not self.has_header and not self.columns:
            raise SchemaError(f"schema {self.name}: a header-less format must list its columns")
        if self.columns:
            missing = [f for f in self.features if f not in self.columns]
            if missing:
                raise SchemaError(f"schema {self.name}: feature {missing[0]!r} is not among its columns")

    # ------------------------------------------------------------------ derived views
    @property
    def features(self) -> tuple[str, ...]:
        return (*self.numeric, *self.categorical)

    @property
    def fields(self) -> tuple[str, ...]:
        """Every field a record of this schema can carry (features, key, timestamp, label)."""
        extra = [f for f in (self.key, self.timestamp, self.label) if f is not None]
        return (*self.features, *[f for f in extra if f not in self.features])

    def is_normal(self, labels: Sequence[str] | np.ndarray) -> np.ndarray:
        """Boolean array: which (already cleaned) labels mean normal traffic."""
        normal = {s.lower() for s in self.normal_labels}
        return np.fromiter((str(v).lower() in normal for v in labels), dtype=bool, count=len(labels))

    def clean_label(self, value: object) -> str:
        text = str(value).strip()
        if self.label_strip:
            text = text.rstrip(self.label_strip)
        return text

    def resolve_header(self, header: Sequence[str]) -> dict[str, int]:
        """Map canonical field names to column positions of a file header, using aliases.

        Raises :class:`SchemaError` naming the first feature the header lacks, or the key field when the
        header lacks it: windows per key are what the model learnt, and one stream of all records scores
        differently. A field listed in ``optional_columns`` may be absent (an absent feature reads as
        :data:`ABSENT`, an absent key puts all records in one stream).
        """
        position = {normalize_name(h): i for i, h in reversed(list(enumerate(header)))}
        out: dict[str, int] = {}
        for f in self.fields:
            for candidate in (f, *self.aliases.get(f, ())):
                idx = position.get(normalize_name(candidate))
                if idx is not None:
                    out[f] = idx
                    break
        missing = [f for f in self.features if f not in out and f not in self.optional_columns]
        if missing:
            spellings = ", ".join(repr(a) for a in (missing[0], *self.aliases.get(missing[0], ())))
            raise SchemaError(
                f"schema {self.name}: the header has no column for field {missing[0]!r} "
                f"(looked for {spellings}); {len(missing)} feature(s) missing in all"
            )
        if self.key is not None and self.key not in out and self.key not in self.optional_columns:
            spellings = ", ".join(repr(a) for a in (self.key, *self.aliases.get(self.key, ())))
            raise SchemaError(
                f"schema {self.name}: the header has no column for the key field {self.key!r} (looked for "
                f"{spellings}): set key to another column, or list {self.key!r} in optional_columns to score "
                "all records as one stream"
            )
        return out

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "format": self.format,
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "has_header": self.has_header,
            "columns": list(self.columns),
            "optional_columns": list(self.optional_columns),
            "delimiter": self.delimiter,
            "key": self.key,
            "timestamp": self.timestamp,
            "timestamp_kind": self.timestamp_kind,
            "label": self.label,
            "normal_labels": sorted(self.normal_labels),
            "label_strip": self.label_strip,
            "signed": sorted(self.signed),
            "unset_tokens": sorted(self.unset_tokens),
            "nonfinite": self.nonfinite,
            "aliases": {k: list(v) for k, v in sorted(self.aliases.items())},
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "schema") -> Schema:
        """Build and validate a schema from plain data (a parsed TOML/YAML/JSON document)."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise SchemaError(
                f"{source}: unknown schema key {unknown[0]!r} (known: {', '.join(sorted(known))})"
            )
        for required in ("name",):
            if required not in data:
                raise SchemaError(f"{source}: schema key {required!r} is required")

        def strings(key: str) -> tuple[str, ...]:
            value = data.get(key, ())
            if isinstance(value, str) or not isinstance(value, Iterable):
                raise SchemaError(f"{source}: schema key {key!r} must be a list of names, got {value!r}")
            items = tuple(value)
            if key == "normal_labels":  # labels 0/1 written as numbers: the files hold them as the text "0"
                items = tuple(str(i) if isinstance(i, int) and not isinstance(i, bool) else i for i in items)
            for item in items:
                if not isinstance(item, str) or not item:
                    raise SchemaError(f"{source}: schema key {key!r} holds {item!r}, not a field name")
            return items

        aliases_raw = data.get("aliases", {})
        if not isinstance(aliases_raw, Mapping):
            raise SchemaError(f"{source}: schema key 'aliases' must be a table of name = [spellings]")
        aliases = {}
        for k, v in aliases_raw.items():
            if isinstance(v, str):
                v = [v]
            aliases[str(k)] = tuple(str(x) for x in v)
        try:
            version = int(data.get("version", 1))
        except (TypeError, ValueError):
            raise SchemaError(
                f"{source}: schema key 'version' = {data.get('version')!r} is not an integer"
            ) from None
        try:
            return cls(
                name=str(data["name"]),
                version=version,
                format=data.get("format", "csv"),
                numeric=strings("numeric"),
                categorical=strings("categorical"),
                has_header=bool(data.get("has_header", True)),
                columns=strings("columns"),
                optional_columns=strings("optional_columns"),
                delimiter=str(data.get("delimiter", ",")),
                key=data.get("key"),
                timestamp=data.get("timestamp"),
                timestamp_kind=data.get("timestamp_kind", "epoch"),
                label=data.get("label"),
                normal_labels=frozenset(strings("normal_labels")),
                label_strip=str(data.get("label_strip", "")),
                signed=frozenset(strings("signed")),
                unset_tokens=frozenset(strings("unset_tokens")),
                nonfinite=data.get("nonfinite", "reject"),
                aliases=aliases,
                description=str(data.get("description", "")),
            )
        except SchemaError as exc:
            raise SchemaError(f"{source}: {exc}") from None


# ---------------------------------------------------------------------------------------------- parsing
@dataclass
class RecordBatch:
    """Validated records, column-wise. Row ``i`` of every array is the same record.

    ``positions`` says where each record came from (``line 12``, ``partition 3 offset 88``); ``rejected``
    holds one error per record that failed validation (those records are not in the arrays).
    """

    schema: Schema
    numeric: np.ndarray  # (n, len(schema.numeric)) float64
    categorical: np.ndarray  # (n, len(schema.categorical)) object (str)
    keys: np.ndarray  # (n,) object (str)
    timestamps: np.ndarray  # (n,) float64 seconds since the epoch, NaN when the schema has none
    labels: np.ndarray | None  # (n,) object (str), None when the data carries no labels
    positions: list[str]
    rejected: list[RecordError] = field(default_factory=list)
    repaired: dict[str, int] = field(default_factory=dict)
    row_index: np.ndarray | None = None  # index of each kept record in the input table

    def __len__(self) -> int:
        return int(self.numeric.shape[0])

    @property
    def is_normal(self) -> np.ndarray | None:
        return None if self.labels is None else self.schema.is_normal(self.labels)

    def take(self, idx: np.ndarray | Sequence[int]) -> RecordBatch:
        """The sub-batch of rows ``idx`` (in that order); rejections and repairs stay with the parent."""
        idx = np.asarray(idx, dtype=np.int64)
        return RecordBatch(
            schema=self.schema,
            numeric=self.numeric[idx],
            categorical=self.categorical[idx],
            keys=self.keys[idx],
            timestamps=self.timestamps[idx],
            labels=None if self.labels is None else self.labels[idx],
            positions=[self.positions[i] for i in idx],
            row_index=None if self.row_index is None else self.row_index[idx],
        )

    @staticmethod
    def concat(batches: Sequence[RecordBatch]) -> RecordBatch:
        if not batches:
            raise ValueError("concat needs at least one batch")
        schema = batches[0].schema
        has_labels = all(b.labels is not None for b in batches)
        repaired: dict[str, int] = {}
        for b in batches:
            for k, v in b.repaired.items():
                repaired[k] = repaired.get(k, 0) + v
        return RecordBatch(
            schema=schema,
            numeric=np.concatenate([b.numeric for b in batches]),
            categorical=np.concatenate([b.categorical for b in batches]),
            keys=np.concatenate([b.keys for b in batches]),
            timestamps=np.concatenate([b.timestamps for b in batches]),
            labels=np.concatenate([b.labels for b in batches if b.labels is not None])
            if has_labels
            else None,
            positions=[p for b in batches for p in b.positions],
            rejected=[e for b in batches for e in b.rejected],
            repaired=repaired,
        )


_NAN_TEXT = {"nan", "+nan", "-nan"}


def flatten_record(obj: dict[str, object], max_depth: int = 4) -> dict[str, object]:
    """``obj`` with nested objects as dotted keys ({"flow": {"age": 3}} → {"flow.age": 3}), down to
    ``max_depth`` levels (deeper objects stay objects: a crafted record cannot make this recurse far).
    This is how a schema's dotted field names read nested JSON (Suricata's ``flow.bytes_toserver``); a
    record with no nested object (Zeek writes ``id.orig_h`` as one key) is returned as it is."""
    if not any(isinstance(v, dict) for v in obj.values()):
        return obj
    out: dict[str, object] = {}

    def walk(node: Mapping[str, object], prefix: str, depth: int) -> None:
        for k, v in node.items():
            name = f"{prefix}{k}"
            if isinstance(v, dict) and depth < max_depth:
                walk(v, f"{name}.", depth + 1)
            else:
                out[name] = v

    walk(obj, "", 0)
    return out


def absent_value(schema: Schema, name: str) -> object:
    """What an optional feature reads as where a record lacks it: :data:`ABSENT`, or 0 for a number."""
    return ABSENT if name in schema.categorical else 0


def _is_missing(v: object) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return False  # a real NaN is a non-finite value, not an absent one
    return isinstance(v, str) and v.strip() == ""


def _category_text(v: object) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def bounded_key(key: str) -> str:
    """``key`` itself, or, when longer than :data:`MAX_KEY_CHARS`, its start and a digest of the whole (so
    distinct long keys stay distinct, and an operator still sees what the key began with).

    >>> bounded_key("10.0.0.7")
    '10.0.0.7'
    >>> long = bounded_key("x" * 10_000)
    >>> len(long), long[198:206]
    (218, 'xx…#e4ee')
    """
    if len(key) <= MAX_KEY_CHARS:
        return key
    return key[:200] + "…#" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def parse_table(
    schema: Schema,
    table: Mapping[str, Sequence[object] | np.ndarray],
    positions: Sequence[str],
    *,
    require_label: bool = False,
) -> RecordBatch:
    """Validate a column table (canonical field name → values) into a :class:`RecordBatch`.

    Values may be strings (from a file) or JSON values. A feature column absent from ``table`` is a
    :class:`SchemaError` (the data does not fit the schema at all); bad *values* reject their record only.
    """
    n = len(positions)
    for f in schema.features:
        if f not in table:
            if f not in schema.optional_columns:
                raise SchemaError(f"schema {schema.name}: the data has no field {f!r}")
            table = {**table, f: [absent_value(schema, f)] * n}
    errors: list[RecordError | None] = [None] * n
    bad = np.zeros(n, dtype=bool)
    repaired: dict[str, int] = {}

    def reject(mask: np.ndarray, field_name: str, values: np.ndarray, code: str, reason: str) -> None:
        new = mask & ~bad
        for i in np.flatnonzero(new).tolist():
            errors[i] = RecordError(reason, field=field_name, value=values[i], where=positions[i], code=code)
        bad[new] = True

    def as_objects(values: Sequence[object] | np.ndarray, types: set[type] | None = None) -> np.ndarray:
        if len(values) != n:
            raise SchemaError(f"schema {schema.name}: a column has {len(values)} values for {n} records")
        if types is None:
            types = set(map(type, values))
        if _STRUCTURED & types:  # one value per cell; numpy would walk a nested value to its depth
            arr = np.empty(n, dtype=object)
            for i, v in enumerate(values):
                arr[i] = v
            return arr
        return np.asarray(values, dtype=object)

    def reject_structured(
        raw: np.ndarray,
        name: str,
        types: set[type],
        code: str = WRONG_TYPE,
        reason: str = "not a number or text",
    ) -> np.ndarray | None:
        """A JSON array or object where a field wants one value (text columns would take its repr). Returns
        the mask of those values, or None where there are none."""
        if not _STRUCTURED & types:
            return None
        mask = np.fromiter((isinstance(v, list | dict | tuple) for v in raw), dtype=bool, count=n)
        reject(mask, name, raw, code, f"{reason} (a JSON array or object)")
        return mask

    # Each column takes a fast path when all its values have the type live JSON records give (numbers for
    # numbers, text for text): the per-value checks below only run where some value is unusual. A
    # contract test holds both paths to the same results.
    numeric = np.zeros((n, len(schema.numeric)), dtype=np.float64)
    for j, name in enumerate(schema.numeric):
        column = table[name]
        values = _finite_numbers(column, n)
        if values is not None:
            raw = None
        else:
            types = set(map(type, column))
            raw = as_objects(column, types)
            structured = reject_structured(raw, name, types)
            values = _to_float(raw if structured is None else np.where(structured, 0.0, raw))
            nan = np.isnan(values)
            if nan.any():
                for i in np.flatnonzero(nan).tolist():
                    v = raw[i]
                    if isinstance(v, str) and v.strip() in schema.unset_tokens:
                        values[i] = 0.0
                        repaired[name] = repaired.get(name, 0) + 1
                    elif _is_missing(v):
                        reject(_one(n, i), name, raw, MISSING_VALUE, "missing value")
                    elif (isinstance(v, float) and math.isnan(v)) or (
                        isinstance(v, str) and v.strip().lower() in _NAN_TEXT
                    ):
                        if schema.nonfinite == "zero":
                            values[i] = 0.0
                            repaired[name] = repaired.get(name, 0) + 1
                        else:
                            reject(_one(n, i), name, raw, NON_FINITE, "non-finite value (NaN) is not allowed")
                    else:
                        reject(_one(n, i), name, raw, WRONG_TYPE, "not a number")
            if bool in types:
                is_bool = np.fromiter((isinstance(v, bool) for v in raw), dtype=bool, count=n)
                reject(is_bool, name, raw, WRONG_TYPE, "not a number (boolean)")
            inf = np.isinf(values)
            if inf.any():
                if schema.nonfinite == "zero":
                    values[inf] = 0.0
                    repaired[name] = repaired.get(name, 0) + int(inf.sum())
                else:
                    reject(inf, name, raw, NON_FINITE, "non-finite value (inf) is not allowed")
        if name not in schema.signed and (values < 0).any():
            raw = as_objects(column) if raw is None else raw
            reject(values < 0, name, raw, NEGATIVE_VALUE, "negative value in a field that cannot be negative")
        numeric[:, j] = values

    categorical = np.empty((n, len(schema.categorical)), dtype=object)
    for j, name in enumerate(schema.categorical):
        types = set(map(type, table[name]))
        raw = as_objects(table[name], types)
        reject_structured(raw, name, types)
        if types == {str}:
            text = _object_array(list(map(str.strip, raw)))
        else:
            text = _object_array([_category_text(v) if v is not None else "" for v in _flat(raw, types)])
        reject(text == "", name, raw, MISSING_VALUE, "missing value")
        categorical[:, j] = text

    if schema.key is not None and schema.key in table:
        types = set(map(type, table[schema.key]))
        raw = as_objects(table[schema.key], types)
        reject_structured(raw, schema.key, types)
        stripped = list(map(str.strip, raw)) if types == {str} else None
        if stripped is not None and "" not in stripped and max(map(len, stripped)) <= MAX_KEY_CHARS:
            keys = _object_array(stripped)
        else:
            keys = _object_array(
                [GLOBAL_KEY if _is_missing(v) else bounded_key(str(v).strip()) for v in _flat(raw, types)]
            )
    else:
        keys = np.full(n, GLOBAL_KEY, dtype=object)

    timestamps = np.full(n, np.nan)
    if schema.timestamp is not None and schema.timestamp in table:
        types = set(map(type, table[schema.timestamp]))
        raw = as_objects(table[schema.timestamp], types)
        epoch = schema.timestamp_kind != "datetime"
        numbers = _finite_numbers(raw, n) if epoch else None
        if numbers is not None:
            timestamps, absent = numbers, np.zeros(n, dtype=bool)
        else:
            structured = reject_structured(
                raw, schema.timestamp, types, BAD_TIMESTAMP, "not a valid timestamp"
            )
            if structured is not None:
                raw = _flat(raw, types)
            if bool in types:  # JSON true is not 1970-01-01T00:00:01
                is_bool = np.fromiter((isinstance(v, bool) for v in raw), dtype=bool, count=n)
                reject(is_bool, schema.timestamp, raw, BAD_TIMESTAMP, "not a valid timestamp (a boolean)")
            timestamps = _coerced(raw) if epoch else _parse_datetimes(raw)
            absent = np.fromiter((_is_missing(v) for v in raw), dtype=bool, count=n)  # no time: fine
        if epoch and schema.timestamp_kind != "epoch":
            timestamps = timestamps / _EPOCH_DIVISOR[schema.timestamp_kind]
        reject(
            ~np.isfinite(timestamps) & ~absent, schema.timestamp, raw, BAD_TIMESTAMP, "not a valid timestamp"
        )
        outside = (timestamps < 0) | (timestamps >= LATEST_TIMESTAMP_S)  # (NaN is neither: rejected above)
        if outside.any():
            reject(outside, schema.timestamp, raw, BAD_TIMESTAMP, "not a valid timestamp: not between 1970 and 2100 in seconds "
                   "since the epoch (milliseconds?)")  # fmt: skip

    labels = None
    if schema.label is not None and schema.label in table:
        types = set(map(type, table[schema.label]))
        raw = as_objects(table[schema.label], types)
        reject_structured(raw, schema.label, types)
        if types - {str, type(None)}:
            cleaned = [schema.clean_label(v) if v is not None else "" for v in _flat(raw, types)]
        else:  # text or absent: few distinct labels, each cleaned once
            clean = {v: schema.clean_label(v) if v is not None else "" for v in set(raw)}
            cleaned = list(map(clean.__getitem__, raw))
        # an absent label (None: a live record carries none) is allowed; an empty one in a file is not
        labels = _object_array(cleaned)
        given = raw != None  # noqa: E711 - elementwise: which records carry a label
        reject((labels == "") & given, schema.label, raw, MISSING_VALUE, "missing label")
        if not given.any():
            labels = None
    elif require_label:
        raise SchemaError(f"schema {schema.name}: the data has no label field {schema.label!r}")

    keep = np.flatnonzero(~bad)
    return RecordBatch(
        schema=schema,
        numeric=numeric[keep],
        categorical=categorical[keep],
        keys=keys[keep],
        timestamps=timestamps[keep],
        labels=None if labels is None else labels[keep],
        positions=[positions[i] for i in keep.tolist()],
        rejected=[e for e in errors if e is not None],
        repaired=repaired,
        row_index=keep,
    )


_JSON_NUMBERS = {int, float}
_STRUCTURED = {list, dict, tuple}


def _finite_numbers(column: Sequence[object] | np.ndarray, n: int) -> np.ndarray | None:
    """The fast path of a numeric column: ``column`` as float64 when it holds ``n`` JSON numbers (int or
    float; not bool) that are all finite, or is a float64 array of finite values (a typed decoder's);
    else None, and the general path says what is wrong."""
    if isinstance(column, np.ndarray) and column.dtype == np.float64:
        return column if len(column) == n and np.isfinite(column).all() else None
    if len(column) != n or not set(map(type, column)) <= _JSON_NUMBERS:
        return None
    try:
        values = np.array(column, dtype=np.float64)
    except OverflowError:  # an integer beyond float range
        return None
    return values if np.isfinite(values).all() else None


def _flat(raw: np.ndarray, types: set[type]) -> np.ndarray:
    """``raw`` with every JSON array or object (already rejected) as None, so that no text conversion walks
    a value nested a thousand levels deep."""
    if not _STRUCTURED & types:
        return raw
    return _object_array([None if isinstance(v, list | dict | tuple) else v for v in raw])


def _object_array(values: Sequence[object]) -> np.ndarray:
    """A 1-D object array of ``values`` (``np.array`` would make text columns fixed-width strings)."""
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def _to_float(raw: np.ndarray) -> np.ndarray:
    """Numbers from strings or JSON values; NaN where a value is not a number (classified by the caller).

    One rule whatever else the batch holds: numeric text is ASCII without digit separators. numpy's cast
    (Python's ``float``) also reads ``"1_000"``, Arabic-Indic and full-width digits, which pandas' coercion
    does not; a batch where any value sent the column to the coercion judged such text "not a number", a
    batch without one took it."""
    try:
        values = raw.astype(np.float64)  # fast path: every value is numeric text or a number
    except (ValueError, TypeError, OverflowError):
        return _coerced(raw)
    try:
        text = "".join(raw)  # every value is text (a file's column): one pass in C
    except TypeError:
        text = "".join(v for v in raw if isinstance(v, str))
    if "_" in text or not text.isascii():
        return _coerced(raw)
    return values


def _coerced(raw: np.ndarray) -> np.ndarray:
    """Numbers from any values (pandas' coercion), NaN where one is not a number; a writable copy.

    Where pandas gives up on ASCII text that Python's ``float`` reads (digits beyond float range, which are
    infinite, or padding blanks), the text is read as the fast path of :func:`_to_float` reads it: a value's
    verdict must not depend on what else its batch holds."""
    coerced = pd.to_numeric(pd.Series(_huge_ints_as_inf(raw), dtype=object), errors="coerce")
    values = np.array(coerced.to_numpy(dtype=np.float64), dtype=np.float64)
    for i in np.flatnonzero(np.isnan(values)).tolist():
        v = raw[i]
        if isinstance(v, str) and v.isascii() and "_" not in v:
            with contextlib.suppress(ValueError):
                values[i] = float(v)
    return values


def _huge_ints_as_inf(raw: np.ndarray) -> np.ndarray:
    """``raw`` with every integer beyond float range (JSON allows 400 digits) as ±inf, so that it is judged
    as the text ``1e999`` is — infinite — instead of making numpy and pandas raise OverflowError."""
    if not any(type(v) is int and _overflows(v) for v in raw):
        return raw
    return _object_array(
        [(math.inf if v > 0 else -math.inf) if type(v) is int and _overflows(v) else v for v in raw]
    )


def _overflows(v: int) -> bool:
    try:
        float(v)
    except OverflowError:
        return True
    return False


def _one(n: int, i: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[i] = True
    return mask


def _parse_datetimes(raw: np.ndarray) -> np.ndarray:
    """Datetime strings (ISO, or CIC's day-first ``3/7/2017 8:55``) to epoch seconds; NaN where unparseable."""
    series = pd.Series(raw, dtype=object).astype(str)
    iso = pd.to_datetime(series, errors="coerce", format="ISO8601", utc=True)
    todo = iso.isna() & series.str.contains("/", regex=False)
    if todo.any():
        iso[todo] = pd.to_datetime(series[todo], errors="coerce", dayfirst=True, format="mixed", utc=True)
    out = np.full(len(raw), np.nan)
    ok = iso.notna().to_numpy()
    out[ok] = iso[ok].astype("int64").to_numpy() / 1e9 * _ns_scale(iso)
    return out


def _ns_scale(series: pd.Series) -> float:
    """pandas 3 may store datetimes at µs or s resolution; scale integer views to nanoseconds."""
    unit = getattr(series.dt, "unit", "ns")
    return {"s": 1e9, "ms": 1e6, "us": 1e3, "ns": 1.0}[unit]


# ------------------------------------------------------------------------------------ built-in schemas
KDD_FEATURES = (
    "duration",
    "protocol_type",
    "service",
    "flag",
    "src_bytes",
    "dst_bytes",
    "land",
    "wrong_fragment",
    "urgent",
    "hot",
    "num_failed_logins",
    "logged_in",
    "num_compromised",
    "root_shell",
    "su_attempted",
    "num_root",
    "num_file_creations",
    "num_shells",
    "num_access_files",
    "num_outbound_cmds",
    "is_host_login",
    "is_guest_login",
    "count",
    "srv_count",
    "serror_rate",
    "srv_serror_rate",
    "rerror_rate",
    "srv_rerror_rate",
    "same_srv_rate",
    "diff_srv_rate",
    "srv_diff_host_rate",
    "dst_host_count",
    "dst_host_srv_count",
    "dst_host_same_srv_rate",
    "dst_host_diff_srv_rate",
    "dst_host_same_src_port_rate",
    "dst_host_srv_diff_host_rate",
    "dst_host_serror_rate",
    "dst_host_srv_serror_rate",
    "dst_host_rerror_rate",
    "dst_host_srv_rerror_rate",
)
KDD_CATEGORICAL = ("protocol_type", "service", "flag")

_KDD = Schema(
    name="kdd",
    version=1,
    format="csv",
    has_header=False,
    columns=(*KDD_FEATURES, "label", "difficulty"),
    optional_columns=("difficulty",),
    numeric=tuple(f for f in KDD_FEATURES if f not in KDD_CATEGORICAL),
    categorical=KDD_CATEGORICAL,
    key="src_host",
    timestamp="ts",
    label="label",
    normal_labels=frozenset({"normal"}),
    label_strip=".",
    description=(
        "KDD Cup 1999 and NSL-KDD connection records: 41 features named as in kddcup.names, then the label "
        "(KDD'99 writes it with a trailing dot), then NSL-KDD's optional difficulty. Files carry no host or "
        "time; live JSON records may add 'src_host' (entity key) and 'ts' (epoch seconds)."
    ),
)

# CICFlowMeter: canonical name (re-extracted "improved" CIC-IDS2017 spelling) → other spellings
# (the original MachineLearningCVE / TrafficLabelling CSVs, whose names carry stray leading spaces).
_CIC_NUMERIC: dict[str, tuple[str, ...]] = {
    "Flow Duration": (),
    "Total Fwd Packet": ("Total Fwd Packets",),
    "Total Bwd packets": ("Total Backward Packets",),
    "Total Length of Fwd Packet": ("Total Length of Fwd Packets",),
    "Total Length of Bwd Packet": ("Total Length of Bwd Packets",),
    "Fwd Packet Length Max": (),
    "Fwd Packet Length Min": (),
    "Fwd Packet Length Mean": (),
    "Fwd Packet Length Std": (),
    "Bwd Packet Length Max": (),
    "Bwd Packet Length Min": (),
    "Bwd Packet Length Mean": (),
    "Bwd Packet Length Std": (),
    "Flow Bytes/s": (),
    "Flow Packets/s": (),
    "Flow IAT Mean": (),
    "Flow IAT Std": (),
    "Flow IAT Max": (),
    "Flow IAT Min": (),
    "Fwd IAT Total": (),
    "Fwd IAT Mean": (),
    "Fwd IAT Std": (),
    "Fwd IAT Max": (),
    "Fwd IAT Min": (),
    "Bwd IAT Total": (),
    "Bwd IAT Mean": (),
    "Bwd IAT Std": (),
    "Bwd IAT Max": (),
    "Bwd IAT Min": (),
    "Fwd PSH Flags": (),
    "Bwd PSH Flags": (),
    "Fwd URG Flags": (),
    "Bwd URG Flags": (),
    "Fwd Header Length": (),
    "Bwd Header Length": (),
    "Fwd Packets/s": (),
    "Bwd Packets/s": (),
    "Packet Length Min": ("Min Packet Length",),
    "Packet Length Max": ("Max Packet Length",),
    "Packet Length Mean": (),
    "Packet Length Std": (),
    "Packet Length Variance": (),
    "FIN Flag Count": (),
    "SYN Flag Count": (),
    "RST Flag Count": (),
    "PSH Flag Count": (),
    "ACK Flag Count": (),
    "URG Flag Count": (),
    "CWR Flag Count": ("CWE Flag Count",),
    "ECE Flag Count": (),
    "Down/Up Ratio": (),
    "Average Packet Size": (),
    "Fwd Segment Size Avg": ("Avg Fwd Segment Size",),
    "Bwd Segment Size Avg": ("Avg Bwd Segment Size",),
    "Fwd Bytes/Bulk Avg": ("Fwd Avg Bytes/Bulk",),
    "Fwd Packet/Bulk Avg": ("Fwd Avg Packets/Bulk",),
    "Fwd Bulk Rate Avg": ("Fwd Avg Bulk Rate",),
    "Bwd Bytes/Bulk Avg": ("Bwd Avg Bytes/Bulk",),
    "Bwd Packet/Bulk Avg": ("Bwd Avg Packets/Bulk",),
    "Bwd Bulk Rate Avg": ("Bwd Avg Bulk Rate",),
    "Subflow Fwd Packets": (),
    "Subflow Fwd Bytes": (),
    "Subflow Bwd Packets": (),
    "Subflow Bwd Bytes": (),
    "FWD Init Win Bytes": ("Init_Win_bytes_forward", "Init Win bytes forward"),
    "Bwd Init Win Bytes": ("Init_Win_bytes_backward", "Init Win bytes backward"),
    "Fwd Act Data Pkts": ("act_data_pkt_fwd",),
    "Fwd Seg Size Min": ("min_seg_size_forward",),
    "Active Mean": (),
    "Active Std": (),
    "Active Max": (),
    "Active Min": (),
    "Idle Mean": (),
    "Idle Std": (),
    "Idle Max": (),
    "Idle Min": (),
}
# Fields that legitimately go negative in CICFlowMeter output: -1 is its "not seen" sentinel for the
# initial window sizes, and its IAT/rate arithmetic yields small negatives on clock skew.
_CIC_SIGNED = frozenset(
    {
        "FWD Init Win Bytes",
        "Bwd Init Win Bytes",
        "Flow IAT Min",
        "Flow IAT Mean",
        "Flow IAT Max",
        "Fwd IAT Min",
        "Flow Bytes/s",
        "Flow Packets/s",
        "Fwd Header Length",
        "Bwd Header Length",
    }
)

_CIC = Schema(
    name="cicflowmeter",
    version=1,
    format="csv",
    has_header=True,
    # the MachineLearningCVE CSVs (CIC-IDS2017's most used files) have no protocol, source address or time
    optional_columns=("Protocol", "Src IP", "Timestamp"),
    numeric=tuple(_CIC_NUMERIC),
    categorical=("Dst Port", "Protocol"),
    key="Src IP",
    timestamp="Timestamp",
    timestamp_kind="datetime",
    label="Label",
    normal_labels=frozenset({"BENIGN"}),
    signed=_CIC_SIGNED,
    nonfinite="zero",
    aliases={
        **{k: v for k, v in _CIC_NUMERIC.items() if v},
        "Dst Port": ("Destination Port",),
        "Src IP": ("Source IP",),
    },
    description=(
        "CICFlowMeter flow CSV (CIC-IDS2017 style). Accepts the original MachineLearningCVE/TrafficLabelling "
        "column names (stray spaces included) and the re-extracted 'improved' names; columns only one variant "
        "has are ignored. NaN/Infinity in rate fields (0-µs flows) are repaired to 0. MachineLearningCVE files "
        "carry no Protocol, Src IP or Timestamp: Protocol reads as '(absent)' and all records form one stream."
    ),
)

ZEEK_NUMERIC = (
    "duration",
    "orig_bytes",
    "resp_bytes",
    "missed_bytes",
    "orig_pkts",
    "orig_ip_bytes",
    "resp_pkts",
    "resp_ip_bytes",
)
_ZEEK = Schema(
    name="zeek-conn",
    version=1,
    format="zeek",
    has_header=True,
    numeric=ZEEK_NUMERIC,
    categorical=("proto", "service", "conn_state", "id.resp_p", "history"),
    key="id.orig_h",
    timestamp="ts",
    timestamp_kind="epoch",
    label="label",
    normal_labels=frozenset({"benign", "normal"}),
    unset_tokens=frozenset({"-", "(empty)"}),
    description=(
        "Zeek conn.log, TSV with a '#fields' header or JSON lines. Unset numeric fields ('-') are repaired "
        "to 0 and counted. An optional 'label' column (as in IoT-23) gives ground truth."
    ),
)

# Suricata's EVE JSON log, event_type "flow" (one line per finished flow; the counters are nested under
# "flow", TCP's flags under "tcp"). Field names follow Suricata's EVE format documentation.
_SURICATA = Schema(
    name="suricata-flow",
    version=1,
    format="json",
    numeric=(
        "flow.pkts_toserver",
        "flow.pkts_toclient",
        "flow.bytes_toserver",
        "flow.bytes_toclient",
        "flow.age",
    ),
    categorical=(
        "proto",
        "app_proto",
        "dest_port",
        "flow.state",
        "flow.reason",
        "tcp.tcp_flags_ts",
        "tcp.tcp_flags_tc",
        "icmp_type",
        "icmp_code",
    ),
    optional_columns=(
        "app_proto",
        "dest_port",
        "tcp.tcp_flags_ts",
        "tcp.tcp_flags_tc",
        "icmp_type",
        "icmp_code",
    ),
    key="src_ip",
    timestamp="timestamp",
    timestamp_kind="datetime",
    label="label",
    normal_labels=frozenset({"benign", "normal"}),
    description=(
        "Suricata EVE JSON, event_type 'flow' (eve-log with types: [flow]; nested 'flow' and 'tcp' objects "
        "read by dotted names). Fields a flow does not have (app_proto, TCP flags, ports or ICMP type and code) "
        "read as '(absent)'. An optional 'label' field gives ground truth."
    ),
)

# NetFlow v5/v9 and IPFIX as goflow2 writes them with -format=json (one flat object per flow).
_GOFLOW2 = Schema(
    name="goflow2",
    version=1,
    format="json",
    numeric=("bytes", "packets"),
    categorical=("proto", "dst_port", "tcp_flags", "etype", "icmp_type", "icmp_code"),
    optional_columns=("tcp_flags", "etype", "icmp_type", "icmp_code"),
    key="src_addr",
    timestamp="time_flow_start_ns",
    timestamp_kind="epoch_ns",
    label="label",
    normal_labels=frozenset({"benign", "normal"}),
    description=(
        "NetFlow v5/v9 and IPFIX flow records as goflow2 writes them (-format=json, JSON lines). Fields a "
        "collector leaves out (tcp_flags, etype, ICMP type and code) read as '(absent)'. Sampled flows are "
        "scored as exported (bytes and packets are not multiplied by sampling_rate)."
    ),
)

BUILTIN_SCHEMAS: dict[str, Schema] = {s.name: s for s in (_KDD, _CIC, _ZEEK, _SURICATA, _GOFLOW2)}
SCHEMA_ALIASES = {
    "nsl-kdd": "kdd",
    "kdd99": "kdd",
    "kddcup99": "kdd",
    "cic": "cicflowmeter",
    "zeek": "zeek-conn",
    "suricata": "suricata-flow",
    "eve": "suricata-flow",
    "netflow": "goflow2",
    "ipfix": "goflow2",
}


def builtin_schema(name: str) -> Schema:
    """A built-in schema by name (``kdd``, ``cicflowmeter``, ``zeek-conn``; a few aliases accepted)."""
    key = SCHEMA_ALIASES.get(name, name)
    try:
        return BUILTIN_SCHEMAS[key]
    except KeyError:
        raise SchemaError(
            f"unknown schema {name!r}: use one of {', '.join(BUILTIN_SCHEMAS)} or a schema file (.toml/.yaml)"
        ) from None


MAX_SCHEMA_FILE_BYTES = 1 << 20  # the largest built-in schema is 6 KB


def _load_yaml(raw: bytes) -> Any:
    """YAML without aliases: an anchor may be defined, but ``*name`` is refused. Schema files have no use for
    them, and nested aliases expand exponentially (575 bytes made gigabytes: a "billion laughs")."""
    import yaml

    class NoAliases(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise SchemaError(
                    f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not allowed in "
                    f"schema files; write the value out"
                )
            return super().compose_node(parent, index)

    return yaml.load(raw, Loader=NoAliases)


def load_schema(name_or_path: str | Path) -> Schema:
    """A built-in schema name, or the path of a TOML/YAML schema file the user wrote."""
    text = str(name_or_path)
    if not text.endswith((".toml", ".yaml", ".yml", ".json")):
        return builtin_schema(text)
    path = Path(text)
    try:
        if path.stat().st_size > MAX_SCHEMA_FILE_BYTES:
            raise SchemaError(
                f"schema file {text!r} is {path.stat().st_size:,} bytes: more than a schema file holds "
                f"({MAX_SCHEMA_FILE_BYTES:,})"
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise SchemaError(f"cannot read schema file {text!r}: {exc.strerror}") from None
    try:
        if text.endswith(".toml"):
            data = tomllib.loads(raw.decode("utf-8"))
        elif text.endswith(".json"):
            import json

            data = json.loads(raw)
        else:
            data = _load_yaml(raw)
    except Exception as exc:  # any parser's syntax error becomes one line naming the file
        raise SchemaError(f"schema file {text!r} is not valid: {exc}".splitlines()[0]) from None
    if not isinstance(data, Mapping):
        raise SchemaError(f"schema file {text!r} must hold a table of schema keys")
    if "extends" in data:
        data = extended(data, source=f"schema file {text!r}")
    return Schema.from_dict(data, source=f"schema file {text!r}")


def extended(data: Mapping[str, Any], *, source: str) -> dict[str, Any]:
    """A schema file that ``extends`` a built-in schema, as a whole schema: the built-in's keys, then the
    file's. ``add_numeric`` / ``add_categorical`` add features, ``drop`` removes fields (features, or the
    key/timestamp/label role they hold), ``optional_columns`` and ``aliases`` add to the built-in's; any other
    key (``numeric`` and ``categorical`` included) replaces the built-in's value. The name defaults to
    ``<built-in>-custom``: a schema that differs must not pass for the built-in."""
    base_name = data["extends"]
    if not isinstance(base_name, str):
        raise SchemaError(f"{source}: extends = {base_name!r} must name a built-in schema")
    try:
        merged = builtin_schema(base_name).to_dict()
    except SchemaError as exc:
        raise SchemaError(f"{source}: extends: {exc}") from None
    merged["name"] = f"{merged['name']}-custom"
    merged["description"] = f"{merged['name']}: {merged['description']}"

    def names(key: str) -> list[str]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SchemaError(f"{source}: {key} must be a list of field names, got {value!r}")
        return list(value)

    for key, value in data.items():
        if key in ("extends", "add_numeric", "add_categorical", "drop", "optional_columns", "aliases"):
            continue
        merged[key] = value
    merged["numeric"] = [*merged["numeric"], *names("add_numeric")]
    merged["categorical"] = [*merged["categorical"], *names("add_categorical")]
    dropped = set(names("drop"))
    known = {
        *merged["numeric"],
        *merged["categorical"],
        *(merged[r] for r in ("key", "timestamp", "label") if merged[r]),
    }
    unknown = sorted(dropped - known)
    if unknown:
        raise SchemaError(f"{source}: drop names {unknown[0]!r}, not a field of {base_name!r}")
    for key in ("numeric", "categorical", "signed", "optional_columns"):
        merged[key] = [f for f in merged[key] if f not in dropped]
    for role in ("key", "timestamp", "label"):
        if merged[role] in dropped:
            merged[role] = None
    merged["optional_columns"] = [*merged["optional_columns"], *names("optional_columns")]
    aliases = data.get("aliases", {})
    if not isinstance(aliases, Mapping):
        raise SchemaError(f"{source}: aliases must be a table of name = [spellings]")
    merged["aliases"] = {k: v for k, v in merged["aliases"].items() if k not in dropped}
    for k, v in aliases.items():
        merged["aliases"][k] = [*merged["aliases"].get(k, []), *([v] if isinstance(v, str) else v)]
    return merged

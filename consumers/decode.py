"""Kafka message bytes → validated records, or a dead letter with the reason.

Input records are JSON objects whose keys are the schema's field names plus ``schema`` (and optionally
``schema_version``; absent means current). With ``schema_field="optional"`` a record without ``schema``
is taken to be the model's (an exporter such as Suricata or goflow2 does not tag its records). A schema
with dotted field names reads nested objects by path (``flow.bytes_toserver``), and a feature the schema
lists as optional reads as absent where a record lacks it. Bad messages are data, not exceptions: each becomes a
:class:`DeadLetter` with a reason code from a fixed set (a metric label) and a one-line detail.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

try:  # orjson is a dependency; the stdlib fallback keeps the module importable without it
    from orjson import JSONDecodeError as _JSONError
    from orjson import loads as _loads
except ImportError:  # pragma: no cover
    from json import JSONDecodeError as _JSONError  # type: ignore[assignment]
    from json import loads as _loads  # type: ignore[assignment]
try:  # msgspec is a dependency too; without it every batch takes the general path
    import msgspec
except ImportError:  # pragma: no cover
    msgspec = None  # type: ignore[assignment]

from flowsentinel.detector.errors import MALFORMED, RECORD_CODES
from flowsentinel.detector.schema import (
    SCHEMA_ALIASES,
    RecordBatch,
    Schema,
    absent_value,
    flatten_record,
    parse_table,
)
from flowsentinel.detector.text import shown
from flowsentinel.kafka.client import InputMessage  # (also importable from here)

REASONS = (
    "oversized",
    "empty",
    "not_json",
    "not_object",
    "wrong_schema",
    "unsupported_version",
    "missing_field",
    "unexpected_field",
    # a value the schema refuses (detector.schema.parse_table)
    *(code for code in RECORD_CODES if code != MALFORMED),
    "bad_verdict",  # a feedback-topic message that is not a verdict (consumers.feedback)
    "internal_error",  # handling it raised (a defect): isolated by the service's crash-loop breaker
)
META_FIELDS = ("schema", "schema_version")
SCHEMA_FIELD_MODES = ("required", "optional")


@dataclass(frozen=True)
class DeadLetter:
    message: InputMessage
    reason: str
    detail: str


def _schema_names(schema: Schema) -> frozenset[str]:
    """The names a record may give for ``schema``: its own and its aliases."""
    return frozenset(
        {schema.name} | {alias for alias, target in SCHEMA_ALIASES.items() if target == schema.name}
    )


Decoded = tuple[RecordBatch, list[InputMessage], list[DeadLetter]]
# above this share of a batch's messages not typing, the typed pass hands the whole batch to the general path
# (which then reads each message once) instead of re-reading those messages apart
ODD_SHARE_LIMIT = (1, 10)


def decode_messages(
    messages: Sequence[InputMessage],
    schema: Schema,
    *,
    max_bytes: int,
    allow_extra_fields: bool = False,
    schema_field: str = "required",
) -> Decoded:
    """Decode and validate. Returns the batch of good records, the message of each batch row, and the
    dead letters (in input order).

    A batch is first read in one typed pass (:class:`TypedDecoder`), the messages it refuses by
    :func:`decode_general`, which says what is wrong with each; a batch the typed pass cannot take (a
    valid record it cannot type) is read again whole by the general path. Both give the same batch and
    the same dead letters."""
    typed = TypedDecoder.of(schema, allow_extra_fields=allow_extra_fields, schema_field=schema_field)
    if typed is not None:
        done = typed.decode(messages, max_bytes=max_bytes)
        if done is not None:
            return done
    return decode_general(
        messages,
        schema,
        max_bytes=max_bytes,
        allow_extra_fields=allow_extra_fields,
        schema_field=schema_field,
    )


class TypedDecoder:
    """One pass from JSON bytes to typed values: msgspec decodes each message straight into a struct built
    from the schema (numeric features as floats, the rest as any JSON value), checking the object, its
    field names, ``schema`` and ``schema_version`` as it parses; the numeric columns then go to
    :func:`parse_table` as one float matrix (no dict per record, no per-value type checks in Python).

    Messages that do not type and records whose values the checks reject are read again, alone, by the
    general path, which names what is wrong with each; where it accepts one of them (a record that gives
    numbers as text, say), where a value would be repaired, or where more than a tenth of the batch does not
    type (a flood of bad messages: :data:`ODD_SHARE_LIMIT`), :meth:`decode` returns None and the general
    path reads the whole batch. Schemas with nested (dotted) fields always take the general path."""

    _cache: ClassVar[dict[tuple[int, bool, bool], tuple[Schema, TypedDecoder | None]]] = {}

    def __init__(self, schema: Schema, *, allow_extra_fields: bool, untagged_ok: bool) -> None:
        assert msgspec is not None
        self.schema = schema
        self._allow_extra_fields = allow_extra_fields
        self._schema_field = "optional" if untagged_ok else "required"
        # struct attributes are f0, f1, ... (a field name need not be an identifier); JSON names by rename
        names = [*schema.fields, *META_FIELDS]
        attr = {name: f"f{i}" for i, name in enumerate(names)}
        optional = set(schema.optional_columns)
        numeric = set(schema.numeric)
        required: list[tuple[str, Any]] = []
        defaulted: list[tuple[str, Any, Any]] = []
        for name in schema.fields:
            kind: Any = float if name in numeric else Any
            if name in schema.features and name not in optional:
                required.append((attr[name], kind))
            elif name in schema.features:  # an optional feature reads as absent where a record lacks it
                absent = absent_value(schema, name)
                defaulted.append((attr[name], kind, float(absent) if name in numeric else absent))  # type: ignore[arg-type]
            else:  # key, timestamp, label: None where absent
                defaulted.append((attr[name], kind, None))
        tag = Literal[tuple(sorted(_schema_names(schema)))]  # type: ignore[valid-type]
        if untagged_ok:
            defaulted.append((attr["schema"], tag, None))  # absent only: an explicit null is wrong_schema
        else:
            required.append((attr["schema"], tag))
        defaulted.append((attr["schema_version"], Literal[schema.version], schema.version))
        struct = msgspec.defstruct(
            "Record",
            [*required, *defaulted],
            forbid_unknown_fields=not allow_extra_fields,
            rename={a: name for name, a in attr.items()},
            gc=False,
        )
        self._decode: Callable[[bytes], Any] = msgspec.json.Decoder(struct).decode
        self._numeric = operator.attrgetter(*(attr[f] for f in schema.numeric)) if schema.numeric else None
        self._others = [(f, operator.attrgetter(attr[f])) for f in schema.fields if f not in numeric]

    @classmethod
    def of(cls, schema: Schema, *, allow_extra_fields: bool, schema_field: str) -> TypedDecoder | None:
        """The decoder for ``schema`` (made once per schema and options), or None where the schema takes the
        general path only."""
        untagged_ok = schema_field == "optional"
        key = (id(schema), allow_extra_fields, untagged_ok)
        hit = cls._cache.get(key)
        if hit is not None and hit[0] is schema:
            return hit[1]
        decoder = None
        if msgspec is not None and not any("." in f for f in schema.fields):
            decoder = cls(schema, allow_extra_fields=allow_extra_fields, untagged_ok=untagged_ok)
        if len(cls._cache) >= 16:  # model reloads bring new schema objects; keep the latest few
            cls._cache.clear()
        cls._cache[key] = (schema, decoder)
        return decoder

    def decode(self, messages: Sequence[InputMessage], *, max_bytes: int) -> Decoded | None:
        """The batch and the dead letters, as :func:`decode_general` gives them; or None where the general
        path must read this batch whole."""
        schema = self.schema
        decode = self._decode
        records: list[Any] = []
        typed: list[InputMessage] = []
        odd: list[InputMessage] = []  # did not type: the general path reads these alone
        for m in messages:
            value = m.value
            try:
                if value is None or len(value) > max_bytes:
                    raise TypeError
                records.append(decode(value))
                typed.append(m)
            except (msgspec.DecodeError, TypeError, RecursionError):  # ValidationError is a DecodeError
                odd.append(m)
        n, k = len(records), len(schema.numeric)
        if not n or len(odd) * ODD_SHARE_LIMIT[1] > len(messages) * ODD_SHARE_LIMIT[0]:
            return None  # mostly not typed (a flood of bad messages): one general pass is cheaper than two
        table: dict[str, Sequence[object] | np.ndarray] = {}
        if self._numeric is not None:
            rows = map(self._numeric, records)
            matrix = np.fromiter(
                itertools.chain.from_iterable(rows) if k > 1 else rows, dtype=np.float64, count=n * k
            ).reshape(n, k)
            table = {f: matrix[:, j] for j, f in enumerate(schema.numeric)}
        for f, get in self._others:
            table[f] = list(map(get, records))
        positions = [m.position for m in typed]
        batch = parse_table(schema, table, positions)
        if batch.repaired:
            return None
        if not batch.rejected and not odd:
            return batch, typed, []
        # Messages that did not type, and records whose values the checks refused: the general path reads
        # those alone and names each problem as it would in the whole batch (its details show each value
        # as the record gave it), so a bad message placed in every batch does not make the whole batch
        # pay for both paths. Where it accepts one of them (numbers as text, say), it reads the batch.
        refused = {e.where for e in batch.rejected} | {m.position for m in odd}
        bad = [m for m in messages if m.position in refused]
        again, accepted, dead = decode_general(
            bad,
            schema,
            max_bytes=max_bytes,
            allow_extra_fields=self._allow_extra_fields,
            schema_field=self._schema_field,
        )
        if accepted or len(dead) != len(bad) or len(refused) != len(bad) or len(set(positions)) != n:
            return None
        assert batch.row_index is not None
        kept = [typed[i] for i in batch.row_index.tolist()]
        labels = batch.labels
        if labels is None and again.labels is not None:  # only refused records carried a label
            labels = np.full(len(kept), "", dtype=object)
        return dataclasses.replace(batch, labels=labels, rejected=again.rejected), kept, dead


def decode_general(
    messages: Sequence[InputMessage],
    schema: Schema,
    *,
    max_bytes: int,
    allow_extra_fields: bool = False,
    schema_field: str = "required",
) -> Decoded:
    """The path every message can take: decode each with orjson and check it, naming what is wrong with
    each one that fails. Returns what :func:`decode_messages` does."""
    allowed = set(schema.fields) | set(META_FIELDS)
    optional = set(schema.optional_columns) & set(schema.features)
    features = set(schema.features) - optional  # those every record must carry
    nested = any("." in f for f in schema.fields)
    untagged_ok = schema_field == "optional"
    names = _schema_names(schema)
    dead: list[DeadLetter] = []
    objects: list[dict] = []
    kept: list[InputMessage] = []
    passed: frozenset[str] | None = None  # records carry the same fields, message after message
    complete = True  # every kept record carries every optional feature too (the fast transpose below)

    def reject(msg: InputMessage, reason: str, detail: str) -> None:
        dead.append(DeadLetter(msg, reason, f"{msg.position}: {detail}"))

    for msg in messages:
        value = msg.value
        if value is None or len(value) == 0:
            reject(msg, "empty", "empty message (tombstone or blank value)")
            continue
        if len(value) > max_bytes:
            reject(msg, "oversized", f"message of {len(value):,} bytes exceeds the limit of {max_bytes:,}")
            continue
        try:
            obj = _loads(value)
        except (_JSONError, ValueError, RecursionError):
            # Python's json module writes NaN/Infinity; accept the syntax here so that such a record is
            # rejected for its value (non_finite), and everything else for not being JSON
            try:
                obj = json.loads(value)
            except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, too many
                # digits for an int, nesting deeper than Python's recursion limit
                reject(msg, "not_json", f"not valid UTF-8 JSON: {type(exc).__name__}: {str(exc)[:200]}")
                continue
        if not isinstance(obj, dict):
            reject(msg, "not_object", f"JSON {type(obj).__name__} where an object was expected")
            continue
        name = obj.get("schema")
        if not (isinstance(name, str) and name in names) and not (untagged_ok and "schema" not in obj):
            hint = "" if "schema" in obj else " (untagged records need --schema-field optional)"
            reject(
                msg,
                "wrong_schema",
                f"schema {shown(name)} but this detector's model is for {schema.name!r}{hint}",
            )
            continue
        if nested:
            obj = flatten_record(obj)
        version = obj.get("schema_version", schema.version)
        if version != schema.version:
            reject(
                msg,
                "unsupported_version",
                f"schema_version {shown(version)} not supported (model has {schema.name} v{schema.version})",
            )
            continue
        fields = obj.keys()
        if fields != passed:  # the fields of the last record that passed these checks pass them again
            if not features <= fields:
                missing = [f for f in schema.features if f not in obj and f not in optional]
                reject(
                    msg,
                    "missing_field",
                    f"missing field(s) {', '.join(map(repr, missing[:5]))}"
                    + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""),
                )
                continue
            if not allow_extra_fields and not fields <= allowed:
                extra = sorted(k for k in obj if k not in allowed)
                reject(msg, "unexpected_field", f"unexpected field(s) {', '.join(map(shown, extra[:5]))}")
                continue
            passed = frozenset(fields)
            complete = complete and optional <= passed
        objects.append(obj)
        kept.append(msg)

    table: dict[str, Sequence[object]] = {}
    if objects and not complete:  # a record lacks an optional feature: it reads as absent
        table = {f: [o.get(f, absent_value(schema, f)) for o in objects] for f in schema.features}
    elif objects:  # every feature is present (checked above): transpose them in C
        columns = zip(*map(operator.itemgetter(*schema.features), objects), strict=True)
        table = (
            dict(zip(schema.features, columns, strict=True))
            if len(schema.features) > 1
            else {schema.features[0]: [o[schema.features[0]] for o in objects]}
        )
    else:
        table = {f: [] for f in schema.features}
    for f in schema.fields:
        if f not in table:
            table[f] = [o.get(f) for o in objects]
    batch = parse_table(schema, table, [m.position for m in kept])
    if batch.rejected:
        by_position = {m.position: m for m in kept}
        for err in batch.rejected:
            dead.append(DeadLetter(by_position[err.where], err.code, str(err)))
        row_index = batch.row_index if batch.row_index is not None else range(len(kept))
        kept = [kept[i] for i in row_index]
        dead.sort(key=lambda d: (d.message.partition, d.message.offset))
    return batch, kept, dead

"""Read labelled record files (plain or gzip) of any schema into validated :class:`RecordBatch` chunks.

Files are read in chunks so a replay of a multi-GB export runs in flat memory. Rows that cannot be split
into the right number of fields, lines that are not valid JSON, and a gzip stream that ends early are
reported as :class:`RecordError` with the file and line; they never stop the rows around them.

>>> from flowsentinel.detector.schema import builtin_schema
>>> batch = read_records("KDDTest+.txt.gz", builtin_schema("kdd"))  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import sys
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from flowsentinel.detector.errors import MALFORMED, RecordError, SchemaError
from flowsentinel.detector.infer import as_number
from flowsentinel.detector.schema import RecordBatch, Schema, absent_value, flatten_record, parse_table

DEFAULT_CHUNK_ROWS = 65_536
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def open_text(path: str | Path) -> IO[str]:
    """Open a text file, transparently un-gzipping it (detected by magic bytes, not by name)."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            magic = fh.read(2)
    except OSError as exc:
        raise SchemaError(f"cannot read data file {str(path)!r}: {exc.strerror}") from None
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8", errors="replace", newline="")
    return p.open("r", encoding="utf-8", errors="replace", newline="")


def iter_batches(
    path: str | Path,
    schema: Schema,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    limit: int | None = None,
    max_rows: int | None = None,
) -> Iterator[RecordBatch]:
    """Yield validated chunks of a file. Rejected rows ride along in each chunk's ``rejected`` list.
    ``limit`` stops after that many data rows; ``max_rows`` after that many rows of any kind, unreadable
    ones included (a look at a file's start that stays short whatever the file is)."""
    name = Path(path).name
    rows = _iter_rows(path, schema, name)
    header: dict[str, int] | None = None
    pending: list[tuple[int, list[str] | dict[str, object]]] = []
    pending_errors: list[RecordError] = []
    total, seen = 0, 0
    for item in rows:
        if isinstance(item, _Header):
            header = item.columns
            continue
        seen += 1
        if isinstance(item, RecordError):
            pending_errors.append(item)
        else:
            pending.append(item)
            total += 1
            if len(pending) >= chunk_rows:
                yield _to_batch(schema, header, pending, pending_errors, name)
                pending, pending_errors = [], []
        if (limit is not None and total >= limit) or (max_rows is not None and seen >= max_rows):
            break
    if pending or pending_errors:
        yield _to_batch(schema, header, pending, pending_errors, name)


def sample_csv(
    path: str | Path, rows: int, *, delimiter: str | None = None, header: str = "auto"
) -> tuple[list[str] | None, list[list[str]], str]:
    """The header (None if the file has none), the first ``rows`` rows and the delimiter of a CSV file, for
    ``schema infer``. ``header``: ``auto`` takes the first row as a header when none of its cells is a number
    and some column holds only numbers below it (or it is the only row)."""
    out: list[list[str]] = []
    with open_text(path) as fh:
        first_line = fh.readline()
        if delimiter is None:
            try:
                delimiter = csv.Sniffer().sniff(first_line, delimiters=",;\t|").delimiter
            except csv.Error:
                delimiter = ","
        reader = csv.reader(itertools.chain([first_line], fh), delimiter=delimiter)
        try:
            for row in reader:
                if row and any(c.strip() for c in row):
                    out.append(row)
                if len(out) > rows:
                    break
        except csv.Error as exc:
            raise SchemaError(f"{Path(path).name} line {reader.line_num}: not CSV ({exc})") from None
    if not out:
        raise SchemaError(f"{Path(path).name}: no rows to look at")
    first = out[0]
    if header == "auto":

        def number(text: str) -> bool:
            return as_number(text) is not None

        numeric_below = [all(number(r[i]) for r in out[1:50] if i < len(r)) for i in range(len(first))]
        has = not any(number(c) for c in first) and (any(numeric_below) or len(out) == 1)
    else:
        has = header == "yes"
    if has:
        return [c.strip() for c in first], out[1 : rows + 1], delimiter
    return None, out[:rows], delimiter


def is_json_lines(path: str | Path) -> bool:
    """Whether a file's first non-blank character opens a JSON object (JSON lines, not CSV)."""
    with open_text(path) as fh:
        for line in fh:
            if line.strip():
                return line.lstrip().startswith("{")
    return False


def sample_json(path: str | Path, rows: int) -> tuple[list[str], list[list[str]], dict[str, int]]:
    """The field names (nested objects as dotted names, in the order first seen), the first ``rows``
    objects as text cells ("" where a record lacks the field) and how many lacked each field, for
    ``schema infer`` on JSON lines. Lines that are not JSON objects are skipped."""
    objects: list[dict[str, object]] = []
    names: dict[str, None] = {}
    with open_text(path) as fh:
        for line in fh:
            if len(objects) >= rows:
                break
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(obj, dict):
                flat = flatten_record(obj)
                objects.append(flat)
                names.update(dict.fromkeys(flat))
    if not objects:
        raise SchemaError(f"{Path(path).name}: no JSON object lines to look at")

    def text(v: object) -> str:
        if v is None:
            return ""
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, list | dict):
            return json.dumps(v, sort_keys=True)
        return str(v)

    header = list(names)
    cells = [[text(o.get(n)) for n in header] for o in objects]
    absent = {n: sum(n not in o for o in objects) for n in header}
    return header, cells, absent


def read_records(path: str | Path, schema: Schema, *, limit: int | None = None) -> RecordBatch:
    """Read a whole file into one batch (rejected rows listed in ``rejected``)."""
    batches = list(iter_batches(path, schema, limit=limit))
    if not batches:
        return _empty(schema)
    return RecordBatch.concat(batches)


def read_many(paths: Sequence[str | Path], schema: Schema, *, limit: int | None = None) -> RecordBatch:
    batches = [read_records(p, schema, limit=limit) for p in paths]
    return RecordBatch.concat(batches)


# --------------------------------------------------------------------------------------------- internals
class _Header:
    def __init__(self, columns: dict[str, int]) -> None:
        self.columns = columns


Row = tuple[int, list[str] | dict[str, object]]


def _iter_rows(path: str | Path, schema: Schema, name: str) -> Iterator[Row | RecordError | _Header]:
    fh = open_text(path)
    line_no = 0
    try:
        with fh:
            if schema.format == "zeek":
                yield from _zeek_rows(fh, schema, name)
                return
            if schema.format == "json":
                yield from _json_rows(fh, name)
                return
            reader = csv.reader(fh, delimiter=schema.delimiter)
            expected = _expected_widths(schema)
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    line_no = reader.line_num
                    yield RecordError(f"malformed CSV: {exc}", where=f"{name} line {line_no}", code=MALFORMED)
                    continue
                line_no = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if schema.has_header and line_no == 1:
                    header = schema.resolve_header(row)
                    expected = {len(row)}
                    yield _Header(header)
                    continue
                if len(row) not in expected:
                    want = " or ".join(str(w) for w in sorted(expected))
                    yield RecordError(
                        f"expected {want} fields, got {len(row)} (truncated or malformed row)",
                        where=f"{name} line {line_no}",
                        code=MALFORMED,
                    )
                    continue
                yield (line_no, row)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        yield RecordError(
            f"file is truncated or corrupt after this line ({exc})", where=f"{name} line {line_no}"
        )


def _json_object(line: str, line_no: int, name: str) -> Row | RecordError:
    where = f"{name} line {line_no}"
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError; too many digits; nesting too deep
        return RecordError(f"not valid JSON ({getattr(exc, 'msg', type(exc).__name__)})", where=where)
    if not isinstance(obj, dict):
        return RecordError("a JSON line must be an object", where=where)
    return (line_no, flatten_record(obj))


def _json_rows(fh: IO[str], name: str) -> Iterator[Row | RecordError]:
    """JSON lines: one object per line (nested objects are read by dotted field names)."""
    for line_no, line in enumerate(fh, start=1):
        if line.strip():
            yield _json_object(line, line_no, name)


def _zeek_rows(fh: IO[str], schema: Schema, name: str) -> Iterator[Row | RecordError | _Header]:
    separator = "\t"
    width = 0
    for line_no, line in enumerate(fh, start=1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        if line.startswith("{"):
            yield _json_object(line, line_no, name)
        elif line.startswith("#"):
            if line.startswith("#separator"):
                sep = line.split(" ", 1)[1].strip() if " " in line else "\\x09"
                separator = sep.encode().decode("unicode_escape")
            elif line.startswith("#fields"):
                names = line.split(separator)[1:]
                width = len(names)
                yield _Header(schema.resolve_header(names))
        else:
            if not width:
                yield RecordError("data line before the '#fields' header", where=f"{name} line {line_no}")
                continue
            parts = line.split(separator)
            if len(parts) != width:
                yield RecordError(
                    f"expected {width} fields, got {len(parts)} (truncated or malformed row)",
                    where=f"{name} line {line_no}",
                )
                continue
            yield (line_no, parts)


def _expected_widths(schema: Schema) -> set[int]:
    full = len(schema.columns)
    return {full, full - len(schema.optional_columns)}


def _to_batch(
    schema: Schema,
    header: dict[str, int] | None,
    rows: list[Row],
    errors: list[RecordError],
    name: str,
) -> RecordBatch:
    positions = [f"{name} line {line}" for line, _ in rows]
    table: dict[str, list[object]] = {}
    dict_rows = [r for _, r in rows if isinstance(r, dict)]
    if dict_rows:
        if len(dict_rows) != len(rows):
            raise SchemaError(f"{name}: mixes JSON lines and TSV lines")
        # Zeek's JSON writer omits unset fields; they mean what '-' means in its TSV form.
        unset = min(schema.unset_tokens) if schema.unset_tokens else None
        for f in schema.fields:
            column = [r.get(f) for r in dict_rows]
            if all(v is None for v in column):
                if f in schema.optional_columns or f not in schema.features:
                    continue
                if unset is None:
                    raise SchemaError(f"{name}: schema {schema.name}: the JSON records have no field {f!r}")
            if f in schema.optional_columns and f in schema.features:
                column = [absent_value(schema, f) if v is None else v for v in column]
            elif unset is not None and f in schema.features:
                column = [unset if v is None else v for v in column]
            table[f] = column
    elif rows:
        list_rows = [r for _, r in rows if isinstance(r, list)]
        if header is None:
            header = {c: i for i, c in enumerate(schema.columns)}
        width = min(len(r) for r in list_rows)
        for f, idx in header.items():
            if idx < width:
                table[f] = [r[idx] for r in list_rows]
    else:
        for f in schema.features:
            table[f] = []
    batch = parse_table(schema, table, positions)
    batch.rejected = sorted(errors + batch.rejected, key=_error_line)
    return batch


def _error_line(err: RecordError) -> int:
    try:
        return int(err.where.rsplit(" ", 1)[1])
    except (IndexError, ValueError):
        return 0


def _empty(schema: Schema) -> RecordBatch:
    return parse_table(schema, {f: [] for f in schema.features}, [])

"""``schema``: show a schema, or draft one from a file."""

from __future__ import annotations

import argparse
import collections
import re
import sys
from pathlib import Path

from flowsentinel.cli.common import _reasons_said


# ------------------------------------------------------------------------------------------ schema
def cmd_schema(args: argparse.Namespace) -> int:
    from flowsentinel.detector.infer import draft_schema
    from flowsentinel.detector.schema import RecordBatch
    from flowsentinel.producers.files import is_json_lines, iter_batches, sample_csv, sample_json

    stem = Path(args.data).name.split(".")[0]
    name = args.name or (re.sub(r"[^a-z0-9_.-]+", "-", stem.lower()).strip("-.") or "my-flows")
    if not name[0].isalpha():
        name = "flows-" + name
    if is_json_lines(args.data):
        fields, rows, absent = sample_json(args.data, args.rows)
        draft = draft_schema(fields, rows, name=name[:64], label=args.label, absent=absent)
    else:
        header, rows, delimiter = sample_csv(
            args.data, args.rows, delimiter=args.delimiter, header=args.header
        )
        draft = draft_schema(header, rows, name=name[:64], label=args.label, delimiter=delimiter)
    schema = draft.schema()  # the draft must be a valid schema before anyone edits it
    # and it is tried on the sample through the reader train and eval use
    batch = RecordBatch.concat(list(iter_batches(args.data, schema, max_rows=args.rows)))
    text = draft.toml(args.data, args.out or "")
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text, end="")
    shown = _reasons_said(collections.Counter(err.code for err in batch.rejected))
    print(
        f"schema infer: {len(schema.numeric)} numeric, {len(schema.categorical)} categorical, key "
        f"{schema.key!r}, timestamp {schema.timestamp!r}, label {schema.label!r} (normal: "
        f"{sorted(schema.normal_labels) or 'none found'}); {len(draft.by_role('left out'))} column(s) left out. "
        f"{len(batch):,} of {len(batch) + len(batch.rejected):,} sampled rows parse with it"
        + (f" (rejected: {shown})" if shown else "")
        + (f"; written to {args.out}" if args.out else ""),
        file=sys.stderr,
    )
    return 0

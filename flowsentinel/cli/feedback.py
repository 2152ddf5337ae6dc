"""``feedback``: analysts' verdicts from a file onto the feedback topic."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from flowsentinel import environment
from flowsentinel.cli.common import UsageError, _check_files


# -------------------------------------------------------------------------------------------- feedback
def read_verdicts(path: str, verdict: str | None = None, analyst: str | None = None) -> list[dict[str, Any]]:
    """The verdict messages a file holds, each checked as the service checks it (UsageError naming the
    rows that are not verdicts)."""
    from flowsentinel.consumers.feedback import VerdictError, parse_verdict

    text = Path(path).read_text(encoding="utf-8", errors="replace")
    rows: list[tuple[int, Any]] = []
    if path.endswith(".csv"):
        for i, row in enumerate(csv.DictReader(text.splitlines()), start=2):
            rows.append((i, {k.strip(): v.strip() for k, v in row.items() if k and v and v.strip()}))
    else:
        for i, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append((i, json.loads(line)))
                except ValueError as exc:
                    rows.append((i, f"not JSON ({exc})"))
    out, errors = [], []
    for i, row in rows:
        if isinstance(row, dict):
            row = {
                **({"verdict": verdict} if verdict else {}),
                **({"analyst": analyst} if analyst else {}),
                **row,
            }
        try:
            if not isinstance(row, dict):
                raise VerdictError(str(row))
            parse_verdict(json.dumps(row).encode())
            out.append(row)
        except VerdictError as exc:
            errors.append(f"line {i}: {exc}")
    if errors:
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise UsageError(f"{path}: {len(errors)} row(s) are not verdicts: " + "; ".join(errors[:5]) + more)
    if not out:
        raise UsageError(f"{path}: no verdicts")
    return out


def cmd_feedback(args: argparse.Namespace) -> int:
    from flowsentinel.kafka.conn import KafkaUnreachable
    from flowsentinel.kafka.connection import client_security
    from flowsentinel.producers.publisher import Publisher, replay_producer

    _check_files([args.file], "file")
    verdicts = read_verdicts(args.file, args.verdict, args.analyst)
    try:
        _, security = client_security(args.bootstrap_servers, vars(args), environment.for_command("feedback"))
    except KafkaUnreachable as exc:
        print(f"flowsentinel feedback: error: {exc}", file=sys.stderr)
        return 1
    publisher = Publisher(
        args.topic, replay_producer(args.bootstrap_servers, compression="none", security=security)
    )
    try:
        for v in verdicts:
            publisher.send(v, v.get("alert_id") or v.get("episode_id"))
        publisher.flush(timeout=30)
    finally:
        publisher.close()
    summary = publisher.summary
    print(f"sent {summary.sent:,} verdict(s) to {args.topic}  failed {summary.failed:,}")
    for err in summary.first_errors:
        print(f"  {err}", file=sys.stderr)
    return 0 if summary.failed == 0 else 1

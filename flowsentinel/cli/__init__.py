"""The ``flowsentinel`` command line: ``train`` a model on normal traffic, ``score`` a file with it.

Bad arguments, unreadable files and invalid models end with one line naming the value and exit status 2;
a traceback means a bug.

One module per command (``flowsentinel.cli.train`` and so on); what they share is in
``flowsentinel.cli.common``, the parser in ``flowsentinel.cli.parser``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from flowsentinel import environment
from flowsentinel.cli.common import DETECTORS, UsageError, int_at_least
from flowsentinel.cli.demo import cmd_demo
from flowsentinel.cli.detect import cmd_detect
from flowsentinel.cli.evaluate import cmd_eval
from flowsentinel.cli.feedback import cmd_feedback, read_verdicts
from flowsentinel.cli.models import cmd_models, cmd_retrain, cmd_sign
from flowsentinel.cli.parser import build_parser
from flowsentinel.cli.produce import cmd_produce
from flowsentinel.cli.schema import cmd_schema
from flowsentinel.cli.score import cmd_score
from flowsentinel.cli.train import cmd_train, cmd_tune
from flowsentinel.detector.errors import FlowSentinelError

__all__ = [  # what other code imports from here; the rest lives in the command modules
    "COMMANDS",
    "DETECTORS",
    "UsageError",
    "build_parser",
    "int_at_least",
    "main",
    "read_verdicts",
]

# -------------------------------------------------------------------------------------------- main
COMMANDS = {
    "train": cmd_train,
    "score": cmd_score,
    "eval": cmd_eval,
    "tune": cmd_tune,
    "detect": cmd_detect,
    "produce": cmd_produce,
    "feedback": cmd_feedback,
    "sign": cmd_sign,
    "models": cmd_models,
    "retrain": cmd_retrain,
    "schema": cmd_schema,
    "demo": cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    environment.resolve_flags(args)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for line in environment.unknown_variables():
        logging.getLogger("flowsentinel").warning("%s", line)
    from flowsentinel.kafka.secret import redact_secrets_in_logs

    redact_secrets_in_logs()
    try:
        return COMMANDS[args.command](args)
    except (UsageError, FlowSentinelError) as exc:
        print(f"flowsentinel {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"flowsentinel {args.command}: interrupted", file=sys.stderr)
        return 130

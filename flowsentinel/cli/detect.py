"""``detect``: the service."""

from __future__ import annotations

import argparse
import logging


def cmd_detect(args: argparse.Namespace) -> int:
    import signal
    import threading

    # first, before the imports and the model load: a SIGTERM during start-up is a clean stop (exit 0)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())

    from flowsentinel import environment
    from flowsentinel.consumers.main import run_detect
    from flowsentinel.consumers.settings import Settings

    values = {k: v for k, v in vars(args).items() if k not in ("command", "verbose")}
    settings = Settings.load(values, environ=environment.for_command("detect"))
    logging.getLogger().setLevel(settings.log_level.upper())
    return run_detect(settings, stop=stop)

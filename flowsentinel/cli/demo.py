"""``demo``: the whole pipeline on an embedded broker."""

from __future__ import annotations

import argparse


# -------------------------------------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> int:
    from flowsentinel.demo import run_demo

    return run_demo(args)

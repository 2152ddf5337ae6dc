"""Progress for long commands: a live bar on a terminal, plain log lines anywhere else.

A tqdm bar redraws its line with carriage returns. On a terminal that is what one wants; in a log file,
journald, ``docker logs`` or a CI job it becomes one ever-growing line (the demo model's 2-minute
training wrote 35 KB of it). Where stderr is not a terminal the commands therefore log a line every
``every_s`` seconds and one at the end, with the same facts: done / total, rate, time left and the bar's
postfix.

>>> ticks = iter(range(100))  # a clock that moves 1 s a call
>>> p = LineProgress(total=10, desc="eval", unit="rec", every_s=3600, emit=print, clock=lambda: next(ticks))
>>> p.update(4); p.set_postfix(epoch=2); p.close()
eval: 4/10 rec (40%), 2 rec/s, 3s left, epoch=2
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("flowsentinel.progress")


class LineProgress:
    """The part of tqdm's interface the commands use (``update``, ``set_postfix``, ``close``), as lines."""

    def __init__(
        self,
        *,
        total: int | None,
        desc: str,
        unit: str,
        every_s: float = 30.0,
        emit: Callable[[str], None] = log.info,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.desc, self.unit, self.every_s = total, desc, unit, every_s
        self.emit, self.clock = emit, clock
        self.n = 0
        self.postfix = ""
        self.started = self.last = clock()
        self.shown_n = -1

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self.last >= self.every_s:
            self._show(now)

    def set_postfix(self, **kw: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in kw.items())

    def close(self) -> None:
        if self.n != self.shown_n:
            self._show(self.clock())

    def _show(self, now: float) -> None:
        self.last, self.shown_n = now, self.n
        elapsed = max(now - self.started, 1e-9)
        rate = self.n / elapsed
        parts = [f"{self.desc}: {self.n:,}"]
        if self.total:
            parts[0] += f"/{self.total:,} {self.unit} ({100 * self.n / self.total:.0f}%)"
        else:
            parts[0] += f" {self.unit}"
        parts.append(f"{rate:,.0f} {self.unit}/s")
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"{(self.total - self.n) / rate:,.0f}s left")
        if self.postfix:
            parts.append(self.postfix)
        self.emit(", ".join(parts))


def progress_bar(*, total: int | None, desc: str, unit: str, quiet: bool = False) -> Any:
    """A tqdm bar where stderr is a terminal, a :class:`LineProgress` elsewhere, nothing with ``quiet``."""
    from tqdm import tqdm

    if quiet:
        return tqdm(disable=True)
    if sys.stderr.isatty():
        return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, mininterval=0.5)
    return LineProgress(total=total, desc=desc, unit=unit)

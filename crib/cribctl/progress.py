"""`cribctl pull`'s progress on a terminal's stderr: a bar per layer and a total, redrawn in place
from the daemon's PullProgress snapshots, while stdout keeps crictl's one line.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from typing import IO

from crib.cribctl.golike import human_size
from crib.proto.crib.v1 import crib_pb2

# Redraws at most this often: more is invisible and costs a slow terminal.
MIN_REDRAW_S = 0.1
BAR_WIDTH = 30
DIGEST_LEN = 12
STATE_WIDTH = 16

# docker pull's words for where a layer is.
STATE_TEXT = {
    crib_pb2.LAYER_STATE_UNSPECIFIED: "Waiting",
    crib_pb2.LAYER_STATE_WAITING: "Waiting",
    crib_pb2.LAYER_STATE_DOWNLOADING: "Downloading",
    crib_pb2.LAYER_STATE_VERIFYING: "Verifying",
    crib_pb2.LAYER_STATE_EXTRACTING: "Extracting",
    crib_pb2.LAYER_STATE_DONE: "Pull complete",
    crib_pb2.LAYER_STATE_ALREADY_PRESENT: "Already exists",
}

CURSOR_UP = "\x1b[{}A"
CLEAR_LINE = "\x1b[2K"
CLEAR_BELOW = "\x1b[J"


def wanted(stream: IO[str], environ: dict[str, str] | None = None) -> bool:
    """Bars only on a terminal that understands cursor movement."""
    env = os.environ if environ is None else environ
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed streams
        return False
    return tty and env.get("TERM", "") != "dumb"


def short_digest(digest: str) -> str:
    return digest.split(":", 1)[-1][:DIGEST_LEN]


def bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """[=====>     ]; a blob of no bytes has nothing left to fetch, so its bar is full."""
    filled = width if total <= 0 else min(width, done * width // total)
    if filled >= width:
        return "[" + "=" * width + "]"
    if filled == 0:
        return "[" + " " * width + "]"
    return "[" + "=" * (filled - 1) + ">" + " " * (width - filled) + "]"


def _amount(done: int, total: int) -> str:
    return f"{human_size(done, 3)}/{human_size(total, 3)}"


def render(progress: crib_pb2.PullProgress) -> list[str]:
    """The lines for one snapshot, without cursor control."""
    if not progress.layers:
        # Before the manifest is read nothing is known but the name.
        return [f"Resolving {progress.reference}"]
    lines = []
    for layer in progress.layers:
        state = STATE_TEXT.get(layer.state, "Waiting")
        lines.append(
            f"{short_digest(layer.digest):<{DIGEST_LEN}}: {state:<{STATE_WIDTH}} "
            f"{bar(layer.bytes_done, layer.size)} {_amount(layer.bytes_done, layer.size)}"
        )
    done, total = progress.bytes_done, progress.bytes_total
    lines.append(f"{'total':<{DIGEST_LEN}}: {'':<{STATE_WIDTH}} {bar(done, total)} {_amount(done, total)}")
    return lines


class ProgressView:
    """Draws snapshots on a terminal, replacing the previous drawing."""

    def __init__(
        self,
        out: IO[str],
        columns: Callable[[], int] = lambda: shutil.get_terminal_size().columns,
        clock: Callable[[], float] = time.monotonic,
        min_interval: float = MIN_REDRAW_S,
    ) -> None:
        self.out = out
        self.columns = columns
        self.clock = clock
        self.min_interval = min_interval
        self._drawn = 0  # lines of the previous drawing, to move back over
        self._last_draw: float | None = None
        self._pending: crib_pb2.PullProgress | None = None

    def update(self, progress: crib_pb2.PullProgress) -> None:
        """Show this snapshot now, or with the next redraw if the last one was too recent."""
        now = self.clock()
        if self._last_draw is not None and now - self._last_draw < self.min_interval:
            self._pending = progress
            return
        self._draw(progress, now)

    def finish(self) -> None:
        """Draw the latest snapshot if it was held back, so the display ends complete."""
        if self._pending is not None:
            self._draw(self._pending, self.clock())

    def _draw(self, progress: crib_pb2.PullProgress, now: float) -> None:
        # A line longer than the terminal wraps and would break moving back up.
        width = max(self.columns() - 1, 10)
        lines = [line[:width] for line in render(progress)]
        parts = [CURSOR_UP.format(self._drawn)] if self._drawn else []
        parts.extend(f"\r{CLEAR_LINE}{line}\n" for line in lines)
        if len(lines) < self._drawn:
            parts.append(CLEAR_BELOW)
        # One write per redraw, so the terminal never shows half a frame.
        self.out.write("".join(parts))
        self.out.flush()
        self._drawn = len(lines)
        self._last_draw = now
        self._pending = None

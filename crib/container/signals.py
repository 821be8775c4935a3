"""Signal names as images and the CRI spell them, to numbers and back.

An image's StopSignal is Docker's STOPSIGNAL text: "SIGTERM", "TERM", "15", or a
real-time signal as "SIGRTMIN+3" / "RTMIN+3" / "SIGRTMAX-2" (systemd images stop
on SIGRTMIN+3; containerd and Docker parse these with moby/sys/signal). The CRI's
Signal enum spells real-time signals SIGRTMINPLUS3 and SIGRTMAXMINUS2. Python's
signal module names only SIGRTMIN and SIGRTMAX, so the others are counted from them.
"""

from __future__ import annotations

import re
import signal

_REALTIME = re.compile(r"^(?:SIG)?RTM(IN|AX)(?:(\+|-|PLUS|MINUS)(\d+))?$")
# The CRI enum names SIGRTMIN+1..+15, then counts the rest down from SIGRTMAX.
_CRI_PLUS_MAX = 15


def number(name: str) -> int | None:
    """The signal `name` means, or None when it is no signal."""
    text = name.strip().upper()
    if text.isdigit():
        return int(text)
    m = _REALTIME.match(text)
    if m:
        base = signal.SIGRTMIN if m[1] == "IN" else signal.SIGRTMAX
        offset = int(m[3] or 0) * (-1 if m[2] in ("-", "MINUS") else 1)
        value = int(base) + offset
        return value if signal.SIGRTMIN <= value <= signal.SIGRTMAX else None
    found = getattr(signal, text if text.startswith("SIG") else "SIG" + text, None)
    return int(found) if isinstance(found, signal.Signals) else None


def cri_name(value: int) -> str | None:
    """The CRI Signal enum's name for signal `value`, or None when it has none."""
    if signal.SIGRTMIN < value < signal.SIGRTMAX:
        above = value - signal.SIGRTMIN
        return f"SIGRTMINPLUS{above}" if above <= _CRI_PLUS_MAX else f"SIGRTMAXMINUS{signal.SIGRTMAX - value}"
    try:
        return signal.Signals(value).name
    except ValueError:
        return None

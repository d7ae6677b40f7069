"""Human-readable sizes and durations, as docker prints them (github.com/docker/go-units).

One copy for the CLI and the daemon: ``2.14MB`` in ``docker images`` (decimal units, 3 significant
digits), ``308KiB / 23.54GiB`` in ``docker stats`` (binary units, 4 digits), ``Up 3 minutes`` and
``6 months ago`` in ``docker ps``/``images`` (HumanDuration). Standard library only: the CLI imports it.
"""
from __future__ import annotations

import time

DECIMAL = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def _scaled(n: float, base: float, units: tuple[str, ...]) -> tuple[float, str]:
    i = 0
    while n >= base and i < len(units) - 1:
        n /= base
        i += 1
    return n, units[i]


def human_size(n: float, precision: int = 3) -> str:
    """go-units HumanSizeWithPrecision: 2140160 -> ``2.14MB`` (what ``docker images`` prints)."""
    v, unit = _scaled(float(n), 1000.0, DECIMAL)
    return f"{v:.{precision}g}{unit}"


def bytes_size(n: float) -> str:
    """go-units BytesSize: 315392 -> ``308KiB`` (what ``docker stats`` prints)."""
    v, unit = _scaled(float(n), 1024.0, BINARY)
    return f"{v:.4g}{unit}"


def human_duration(seconds: float) -> str:
    """go-units HumanDuration: ``Less than a second``, ``3 seconds``, ``About a minute``,
    ``5 minutes``, ``About an hour``, ``3 hours``, ``2 days``, ``3 weeks``, ``6 months``, ``2 years``."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def ago(timestamp: float, now: float | None = None) -> str:
    """``6 months ago`` for a unix time (the CREATED column of ``docker ps`` and ``docker images``)."""
    return human_duration(max(0.0, (time.time() if now is None else now) - timestamp)) + " ago"


_GO_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
             "m": 60_000_000_000, "h": 3_600_000_000_000}


def parse_go_duration(text: str) -> int:
    """Go's time.ParseDuration, in nanoseconds: ``1m30s``, ``500ms``, ``1.5h``, ``0`` (what
    ``--health-interval`` and friends take). ValueError names the bad input as Go does."""
    import re
    s = text.strip()
    if s in ("0", "+0", "-0"):
        return 0
    parts = re.fullmatch(r"[+-]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+", s)
    if not parts:
        raise ValueError(f'time: invalid duration "{text}"')
    total = sum(float(n) * _GO_UNITS[u] for n, _, u in re.findall(r"(\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", s))
    return -int(total) if s.startswith("-") else int(total)

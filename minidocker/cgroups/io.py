"""Block I/O: the proportional weight (``--blkio-weight``) and the bytes read and written.

v1: ``blkio.weight`` (CFQ) or ``blkio.bfq.weight`` (BFQ), 10..1000; bytes in
``blkio.throttle.io_service_bytes_recursive`` ("MAJ:MIN Read N" lines).
v2: ``io.bfq.weight`` (same range) or ``io.weight`` "default N" (1..10000, converted as runc does:
``1 + (w - 10) * 9999 / 990``); bytes in ``io.stat`` ("MAJ:MIN rbytes=N wbytes=N ...").
A weight only matters with a scheduler that honours it; with none, the host says so and we warn.
"""
from __future__ import annotations

from .driver import has, read, write


def blkio_to_io_weight(w: int) -> int:
    return 1 + (w - 10) * 9999 // 990


def apply_v1(d: str, lim) -> list[str]:
    if lim.blkio_weight:
        for name in ("blkio.weight", "blkio.bfq.weight"):
            if has(d, name):
                write(d, name, lim.blkio_weight)
                return []
        return ["no blkio.weight file: block I/O weight discarded"]
    return []


def apply_v2(d: str, lim) -> list[str]:
    if lim.blkio_weight:
        if has(d, "io.bfq.weight"):
            write(d, "io.bfq.weight", lim.blkio_weight)
        elif has(d, "io.weight"):
            write(d, "io.weight", f"default {blkio_to_io_weight(lim.blkio_weight)}")
        else:
            return ["no io.weight file: block I/O weight discarded"]
    return []


def stats_v1(d: str) -> list[dict]:
    """docker's blkio_stats.io_service_bytes_recursive entries."""
    out = []
    for line in read(d, "blkio.throttle.io_service_bytes_recursive").splitlines():
        parts = line.split()
        if len(parts) == 3 and ":" in parts[0]:
            major, minor = parts[0].split(":")
            out.append({"major": int(major), "minor": int(minor), "op": parts[1], "value": int(parts[2])})
    return out


def stats_v2(d: str) -> list[dict]:
    out = []
    for line in read(d, "io.stat").splitlines():
        parts = line.split()
        if not parts or ":" not in parts[0]:
            continue
        major, minor = parts[0].split(":")
        kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        for key, op in (("rbytes", "read"), ("wbytes", "write")):
            if key in kv:
                out.append({"major": int(major), "minor": int(minor), "op": op, "value": int(kv[key])})
    return out

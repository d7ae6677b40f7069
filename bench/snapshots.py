#!/usr/bin/env python3
"""Benchmark: the two storage drivers on the same work (numbers to read, never asserted).

    .venv/bin/python bench/snapshots.py [--runs 20] [--layers 1]

For each driver: unpack busybox (plus ``--layers - 1`` small layers on top), then ``--runs`` times
prepare a container snapshot (with docker's init layer, as the daemon does), write one file, list
the changes, write the commit layer and remove the snapshots. Reports the median per step and the
disk the container's snapshot takes: overlay's prepare is a mkdir, copy's copies the whole tree.
Everything lives in one temporary directory, removed at the end; mounts happen in forked children
in private mount namespaces only.
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from minidocker import cow, unionfs  # noqa: E402
from minidocker.images import busybox  # noqa: E402
from minidocker.images.commit import commit_image  # noqa: E402
from minidocker.images.store import ImageStore  # noqa: E402
from minidocker.images.unpack import unpack  # noqa: E402


def timed(fn, *args):
    t = time.perf_counter()
    value = fn(*args)
    return time.perf_counter() - t, value


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--layers", type=int, default=1)
    a = p.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (overlay mounts)")
        return 1
    work = tempfile.mkdtemp(prefix="md-bench-snap-")
    try:
        store = ImageStore(os.path.join(work, "images"))
        image = busybox.build_busybox(store)
        for n in range(a.layers - 1):
            path = os.path.join(work, f"l{n}.tar")
            with tarfile.open(path, "w") as tar:
                ti = tarfile.TarInfo(f"layer{n}")
                ti.size = 2
                tar.addfile(ti, io.BytesIO(b"x\n"))
            image = commit_image(store, image, path, {"Cmd": ["sh"]})
        target = os.path.join(work, "mnt")
        os.mkdir(target)
        print(f"{'driver':8} {'unpack':>9} {'prepare':>9} {'write':>9} {'diff':>9} {'commit':>9} {'remove':>9} {'disk':>10}")
        for driver in unionfs.DRIVERS:
            snap = unionfs.new_snapshotter(driver, os.path.join(work, driver))
            t_unpack, top = timed(unpack, store, snap, image)
            steps = {k: [] for k in ("prepare", "write", "diff", "commit", "remove")}
            disk = 0
            for i in range(a.runs):
                def prepare():
                    snap.prepare(f"c{i}-init-active", top)
                    unionfs.add_placeholders(snap, f"c{i}-init-active", files=("/etc/hostname",))
                    snap.commit(f"c{i}-init", f"c{i}-init-active")
                    return snap.prepare(f"c{i}", f"c{i}-init")
                t, mounts = timed(prepare)
                steps["prepare"].append(t)
                t, _ = timed(unionfs.run_mounted, mounts, target,
                             lambda root: open(f"{root}/etc/passwd", "a").write("x\n"))
                steps["write"].append(t)
                t, changes = timed(cow.changes, snap, f"c{i}")
                steps["diff"].append(t)
                t, _ = timed(cow.write_layer, changes, cow.layer_root(snap, f"c{i}"), io.BytesIO())
                steps["commit"].append(t)
                disk = snap.usage(f"c{i}")["Size"] + snap.usage(f"c{i}-init")["Size"]
                t, _ = timed(lambda: (snap.remove(f"c{i}"), snap.remove(f"c{i}-init")))
                steps["remove"].append(t)
            ms = {k: statistics.median(v) * 1000 for k, v in steps.items()}
            print(f"{driver:8} {t_unpack * 1000:8.1f}m " + " ".join(f"{ms[k]:8.1f}m" for k in steps)
                  + f" {disk / 1024:9.0f}K")
        print("(medians in milliseconds; 'write' includes forking and mounting)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

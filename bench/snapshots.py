#!/usr/bin/env python3
"""Benchmark: the storage drivers side by side on the same work (numbers to read, never asserted).

    .venv/bin/python bench/snapshots.py [--runs 20] [--layers 1] [--size 100]

For each driver (overlay, copy, btrfs): unpack busybox plus a ``--size`` MB layer of incompressible
files (plus ``--layers - 1`` small layers on top), then ``--runs`` times prepare a container snapshot
(with docker's init layer, as the daemon does: the "create" column), write one file, list the
changes, write the commit layer and remove the snapshots. Reports the median per step and the disk
the container's snapshots take: overlay's prepare is a mkdir, copy's copies the whole tree, btrfs
snapshots a subvolume (instant, and only the blocks written later are its own: btrfs-filesystem(8)
``du`` "Exclusive").

Everything lives in one temporary directory, removed at the end; btrfs on a scratch loop device in a
private mount namespace of this process (minidocker/scratchfs.py), skipped with a note where the
host has no btrfs; other mounts happen in forked children in private mount namespaces only.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import statistics
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from minidocker import cow, scratchfs, unionfs  # noqa: E402
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
    p.add_argument("--size", type=int, default=100, help="MB of files in the image's big layer (0: none)")
    a = p.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (overlay mounts)")
        return 1
    work = tempfile.mkdtemp(prefix="md-bench-snap-")
    stack = contextlib.ExitStack()
    try:
        store = ImageStore(os.path.join(work, "images"))
        image = busybox.build_busybox(store)
        if a.size:
            image = commit_image(store, image, big_layer(work, a.size), {"Cmd": ["sh"]})
        for n in range(a.layers - 1):
            path = os.path.join(work, f"l{n}.tar")
            with tarfile.open(path, "w") as tar:
                ti = tarfile.TarInfo(f"layer{n}")
                ti.size = 2
                tar.addfile(ti, io.BytesIO(b"x\n"))
            image = commit_image(store, image, path, {"Cmd": ["sh"]})
        target = os.path.join(work, "mnt")
        os.mkdir(target)
        print(f"{'driver':8} {'unpack':>9} {'create':>9} {'write':>9} {'diff':>9} {'commit':>9} {'remove':>9} {'disk':>10}")
        for driver in unionfs.DRIVERS:
            root = os.path.join(work, driver)
            if driver == "btrfs":
                if unionfs._kernel_lacks("btrfs") or not shutil.which("mkfs.btrfs"):
                    print(f"{driver:8} (skipped: no btrfs here)")
                    continue
                scratch = stack.enter_context(scratchfs.btrfs_mount(size=max(1 << 30, 8 * a.size << 20)))
                root = os.path.join(scratch, "snapshots")
            snap = unionfs.new_snapshotter(driver, root)
            t_unpack, top = timed(unpack, store, snap, image)
            steps = {k: [] for k in ("create", "write", "diff", "commit", "remove")}
            disk = 0
            for i in range(a.runs):
                def prepare():
                    snap.prepare(f"c{i}-init-active", top)
                    unionfs.add_placeholders(snap, f"c{i}-init-active", files=("/etc/hostname",))
                    snap.commit(f"c{i}-init", f"c{i}-init-active")
                    return snap.prepare(f"c{i}", f"c{i}-init")
                t, mounts = timed(prepare)
                steps["create"].append(t)
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
        print("(medians in milliseconds; 'write' includes forking and mounting; disk: the container's "
              "own bytes after writing one file)")
    finally:
        stack.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def big_layer(work: str, mb: int) -> str:
    """A layer tar of ``mb`` MB in 1 MB files of random bytes (nothing for a file system to compress
    or deduplicate)."""
    path = os.path.join(work, "big.tar")
    with tarfile.open(path, "w") as tar:
        for n in range(mb):
            ti = tarfile.TarInfo(f"data/blob{n:04d}")
            ti.size = 1 << 20
            tar.addfile(ti, io.BytesIO(os.urandom(1 << 20)))
    return path


if __name__ == "__main__":
    sys.exit(main())

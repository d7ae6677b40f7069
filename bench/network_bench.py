"""Benchmark ``network`` (chapter 11): what networking costs a container start, and what the
userland proxy costs a published port.

* **start**: ``minidocker run --rm busybox true`` on the default bridge (a netns pinned, a veth pair
  wired by netlink, an address, a route, /etc files, and all of it removed at exit) against
  ``--network none``, and against ``podman run --rm --network bridge`` — podman run inside a
  throwaway network namespace (``unshare --net``), so that netavark's bridge, its firewall rules
  and its ``ip_forward`` change all happen in that namespace and die with it. The contenders take
  turns run by run (``interleaved``). Target: ≤ 0.5× podman's median.
* **throughput**: 64 MiB sent by a stdlib client into a busybox ``nc`` sink in a container, once
  through the published port on 127.0.0.1 (the userland proxy: two extra copies through user
  space) and once directly to the container's address (bridge only). Times in ms (lower is better).

``--compare-tree DIR`` adds both starts from another checkout (e.g. /work/main), CLI and daemon,
as a second daemon with its own root, bridge and table: a change measured in the same run.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

PAYLOAD = 64 << 20


def send(addr: tuple[str, int], size: int = PAYLOAD, timeout: float = 20) -> float:
    """Connect, send ``size`` bytes, close; ms for the send. Retried (timer restarted) while the sink
    re-listens between connections: the proxy accepts at once and resets when the container refuses."""
    deadline = time.monotonic() + timeout
    chunk = b"x" * (1 << 20)
    while True:
        try:
            with socket.create_connection(addr, timeout=5) as s:
                t0 = time.perf_counter()
                for _ in range(size // len(chunk)):
                    s.sendall(chunk)
                s.shutdown(socket.SHUT_WR)
                s.recv(1)  # the sink closes after reading everything
                return (time.perf_counter() - t0) * 1000
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def interleaved(run, contenders, runs: int, warmup: int) -> list:
    """Round-robin: run i of every contender, then run i+1 — on a shared machine whose load drifts
    over minutes, each contender then sees the same load (``run.measure`` times one after another)."""
    ms = [run.Measurement(c.name, " ".join(c.argv)) for c in contenders]
    for c, m in zip(contenders, ms):
        try:
            run.time_command(c.argv, 0, warmup, c.env)
        except (run.CommandFailed, OSError, subprocess.SubprocessError) as e:
            m.status, m.why = "failed", str(e)[:300]
    for _ in range(runs):
        for c, m in zip(contenders, ms):
            if m.status == "ok":
                try:
                    m.samples_ms += run.time_command(c.argv, 1, 0, c.env)
                except (run.CommandFailed, OSError, subprocess.SubprocessError) as e:
                    m.status, m.why = "failed", str(e)[:300]
    return [run.summarize(m) for m in ms]


def bench(ws, args, run) -> list:
    """``run`` is bench/run.py (Contender, measure, Measurement, summarize, podman_contender)."""
    results = []
    md = run.minidocker_contender(ws)
    if md.status != "ok":
        return [run.Measurement(md.name, "", md.status, md.why)]
    cli, env = md.argv[0], md.env
    trees = [("", env)]
    if args.compare_tree:  # the same two starts from another checkout (its own daemon), side by side
        other = run.minidocker_contender(ws, args.compare_tree)
        if other.status != "ok":
            results.append(run.Measurement(other.name, "", other.status, other.why))
        else:
            trees.append((" (--compare-tree)", other.env))
    contenders = [run.Contender(name + suffix, argv, env=e) for suffix, e in trees for name, argv in (
        ("minidocker run --rm (bridge)", [cli, "run", "--rm", "busybox", "true"]),
        ("minidocker run --rm --network none", [cli, "run", "--rm", "--network", "none", "busybox", "true"]))]
    pod = run.podman_contender(ws)
    if pod.status == "ok":
        unshare = shutil.which("unshare")
        # A private mount namespace too: podman pins its netns under /run/netns (a bind mount it
        # would otherwise leave in the host's mount table).
        argv = [unshare, "--net", "--mount", "--propagation", "private", "--",
                *[a if a != "--network=none" else "--network=bridge" for a in pod.argv]]
        contenders.append(run.Contender("podman run --rm --network bridge (own netns)", argv, env=pod.env))
    else:
        results.append(run.Measurement(pod.name, "", pod.status, pod.why))
    results += interleaved(run, contenders, args.runs, args.warmup)

    sink = "while true; do nc -l -p 5000 > /dev/null; done"
    r = subprocess.run([cli, "run", "-d", "-p", "127.0.0.1::5000", "busybox", "sh", "-c", sink],
                       env=env, capture_output=True, text=True)
    if r.returncode != 0:
        return results + [run.Measurement("throughput", "", "failed", r.stderr.strip()[-200:])]
    cid = r.stdout.strip()
    try:
        port = int(subprocess.run([cli, "port", cid, "5000"], env=env, capture_output=True, text=True)
                   .stdout.strip().rsplit(":", 1)[1])
        info = json.loads(subprocess.run([cli, "inspect", cid], env=env, capture_output=True, text=True).stdout)[0]
        ip = info["NetworkSettings"]["IPAddress"]
        for name, addr in ((f"{PAYLOAD >> 20} MiB via published 127.0.0.1 port (proxy)", ("127.0.0.1", port)),
                           (f"{PAYLOAD >> 20} MiB direct to the container's address", (ip, 5000))):
            m = run.Measurement(name, f"send to {addr[0]}:{addr[1]}")
            try:
                for _ in range(args.warmup):
                    send(addr)
                m.samples_ms = [send(addr) for _ in range(max(3, args.runs // 4))]
            except OSError as e:
                m.status, m.why = "failed", str(e)
            results.append(run.summarize(m))
    finally:
        subprocess.run([cli, "rm", "-f", cid], env=env, capture_output=True)
    for m in results:
        print(f"  {m.name}: {m.status}" + (f" ({m.median_ms} ms)" if m.median_ms else ""), file=sys.stderr)
    return results

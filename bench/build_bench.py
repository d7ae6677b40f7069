"""Benchmark ``build``: a 10-step Dockerfile, cold (``--no-cache``) and fully cached, minidocker
(``minidocker build`` against our own minidockerd) against ``podman build`` (buildah, its own
configuration and storage in the workspace, ``--network=none``).

The Dockerfile: FROM busybox, then ENV, WORKDIR, COPY (a directory of 200 small files), three RUNs
(each a container), LABEL, COPY of one file, CMD -- ten steps, four of them new layers plus three
container runs. The base image is present for both (podman's is our busybox rootfs, imported).
Every command is timed whole (minidocker's includes the CLI's Python start-up).
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

DOCKERFILE = """\
FROM {base}
ENV APP=/app MODE=bench
WORKDIR /app
COPY files/ /app/files/
RUN ls /app/files | wc -l > /app/count
RUN cat /app/files/* > /app/all && wc -c /app/all
RUN echo "$MODE" > /app/mode
LABEL bench=build
COPY one.txt /app/
CMD ["cat", "/app/count"]
"""


def make_context(d: Path, base: str) -> Path:
    ctx = d / f"ctx-{base.replace('/', '_')}"
    (ctx / "files").mkdir(parents=True, exist_ok=True)
    for n in range(200):
        (ctx / "files" / f"f{n:03}.txt").write_text(f"file {n}\n" * 20)
    (ctx / "one.txt").write_text("one\n")
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(base=base))
    return ctx


def bench(ws, args, run) -> list:
    """``run`` is bench/run.py (Workspace helpers, contenders, Measurement, summarize)."""
    d = Path(ws.path("build"))
    results = []
    md = run.minidocker_contender(ws)
    pm = run.podman_contender(ws)
    contenders = []
    if md.status == "ok":
        ctx = make_context(d, "busybox")
        cli = md.argv[0]
        contenders += [("minidocker build --no-cache", [cli, "build", "-q", "--no-cache", str(ctx)], md.env),
                       ("minidocker build (cached)", [cli, "build", "-q", str(ctx)], md.env)]
    else:
        results.append(run.Measurement("minidocker build", status=md.status, why=md.why))
    podman = shutil.which("podman")
    if pm.status == "ok" and podman:
        ctx = make_context(d, run.IMAGE)
        base = [podman, "build", "-q", "--network=none", f"--cgroup-parent=/{run.CGROUP_NAME}/podman"]
        contenders += [("podman build --no-cache", base + ["--no-cache", str(ctx)], pm.env),
                       ("podman build (cached)", base + [str(ctx)], pm.env)]
    else:
        results.append(run.Measurement("podman build", status=pm.status, why=pm.why))
    for name, argv, env in contenders:
        m = run.Measurement(name, " ".join(argv))
        try:
            m.samples_ms = [round(x, 3) for x in run.time_command(argv, args.runs, args.warmup, env)]
        except run.CommandFailed as e:
            m.status, m.why = "failed", str(e)[:300]
        results.append(run.summarize(m))
        print(f"  {m.name}: {m.status}" + (f" ({m.median_ms} ms)" if m.median_ms else ""), file=sys.stderr)
    return results

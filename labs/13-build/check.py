"""Checker for lab 13 (a tiny builder on the Engine API). The end-to-end checks build through a
minidockerd of their own (temporary root, socket and cgroup parent; needs root), started once
before the checks and stopped after them.

    minidocker lab check 13                                    # your copy (after `minidocker lab start 13`)
    .venv/bin/python labs/13-build/check.py [FILE]             # checks FILE (default: the skeleton)
    .venv/bin/python labs/13-build/check.py --reference        # checks minidocker.build.tiny
"""
from __future__ import annotations

import glob
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parents[1]) not in sys.path:
    sys.path.insert(0, str(HERE.parents[1]))

from minidocker.build import tiny as given  # noqa: E402  (api() is given in the skeleton too)
from minidocker.labs import expect, expect_raises, run_checks, script_main  # noqa: E402

REFERENCE = "minidocker.build.tiny"
TIMEOUT = 120
DAEMON: dict = {}


def check_instructions(m) -> str:
    text = "# comment\nfrom busybox\n\nRUN echo a \\\n  && echo b\nenv A=1\n"
    return expect("instructions(...)", m.instructions(text),
                  [("FROM", "busybox"), ("RUN", "echo a   && echo b"), ("ENV", "A=1")])


def check_context_tar(m) -> str:
    d = tempfile.mkdtemp(prefix="md-lab13-")
    try:
        os.makedirs(f"{d}/dir/sub")
        Path(f"{d}/dir/sub/f").write_text("x")
        names = sorted(tarfile.open(fileobj=io.BytesIO(m.context_tar(d, "dir", "/opt/x/"))).getnames())
        return expect("names in context_tar(ctx, 'dir', '/opt/x/')", names,
                      ["opt/x/dir", "opt/x/dir/sub", "opt/x/dir/sub/f"])
    finally:
        shutil.rmtree(d)


def _run(image: str, *cmd: str) -> str:
    sock = DAEMON["sock"]
    status, c = given.api(sock, "POST", "/containers/create", {"Image": image, "Cmd": list(cmd) or None})
    try:
        given.api(sock, "POST", f"/containers/{c['Id']}/start")
        given.api(sock, "POST", f"/containers/{c['Id']}/wait")
        status, _ = given.api(sock, "GET", f"/containers/{c['Id']}/json")
        logs = _logs(c["Id"])
    finally:
        given.api(sock, "DELETE", f"/containers/{c['Id']}?force=1")
    return logs


def _logs(cid: str) -> str:
    import http.client
    import socket

    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(DAEMON["sock"])
    c = Conn("localhost", timeout=60)
    c.request("GET", f"/containers/{cid}/logs?stdout=1")
    raw, out = c.getresponse().read(), b""
    while len(raw) >= 8:                     # docker's 8-byte frames (chapter 8)
        n = int.from_bytes(raw[4:8], "big")
        out, raw = out + raw[8:8 + n], raw[8 + n:]
    return out.decode()


def check_build_end_to_end(m) -> str:
    if "sock" not in DAEMON:
        raise RuntimeError(DAEMON.get("error", "no daemon"))
    ctx = tempfile.mkdtemp(prefix="md-lab13-ctx-")
    try:
        Path(f"{ctx}/greet.sh").write_text('echo "$GREETING from $(cat /etc/built)"\n')
        text = ("FROM busybox\nCOPY greet.sh /app/\nRUN echo lab13 > /etc/built \\\n && chmod +x /app/greet.sh\n"
                "ENV GREETING=hello\nCMD [\"/bin/sh\", \"/app/greet.sh\"]\n")
        image = m.build(DAEMON["sock"], text, ctx)
        expect("output of the built image", _run(image), "hello from lab13\n")
        status, containers = given.api(DAEMON["sock"], "GET", "/containers/json?all=1")
        expect("containers left after build()", containers, [])
        return "built and ran"
    finally:
        shutil.rmtree(ctx)


def check_failing_run(m) -> str:
    if "sock" not in DAEMON:
        raise RuntimeError(DAEMON.get("error", "no daemon"))
    expect_raises("build() of 'RUN exit 3'", lambda: m.build(DAEMON["sock"], "FROM busybox\nRUN exit 3\n", "/"),
                  RuntimeError, saying="non-zero")
    status, containers = given.api(DAEMON["sock"], "GET", "/containers/json?all=1")
    return expect("containers left after the failed step", containers, [])


ALL_CHECKS = [  # not CHECKS: check() starts the daemon they share first

    ("instructions: comments, blanks, continuations", check_instructions),
    ("context_tar: a source under its base name", check_context_tar),
    ("build: FROM/COPY/RUN/ENV/CMD end to end", check_build_end_to_end),
    ("build: a failing RUN raises and leaves no container", check_failing_run),
]


def _start_daemon() -> None:
    base = tempfile.mkdtemp(prefix="md-lab13-")
    DAEMON.update(base=base, sock=os.path.join(base, "d.sock"), cgroup=f"minidocker-lab13-{os.getpid()}")
    log = open(os.path.join(base, "daemon.log"), "wb")
    DAEMON["proc"] = subprocess.Popen(
        [sys.executable, "-m", "minidocker.daemon.main", "--root", os.path.join(base, "root"),
         "-H", "unix://" + DAEMON["sock"], "--cgroup-parent", DAEMON["cgroup"]],
        stdout=log, stderr=log, cwd=str(HERE.parents[1]))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if given.api(DAEMON["sock"], "GET", "/_ping")[0] == 200:
                return
        except OSError:
            time.sleep(0.05)
    DAEMON["error"] = "the lab's minidockerd did not start: " + Path(base, "daemon.log").read_text()[-500:]
    DAEMON.pop("sock")


def _stop_daemon() -> None:
    proc = DAEMON.get("proc")
    if proc is not None:
        if "sock" in DAEMON:
            for c in given.api(DAEMON["sock"], "GET", "/containers/json?all=1")[1] or []:
                given.api(DAEMON["sock"], "DELETE", f"/containers/{c['Id']}?force=1")
        proc.terminate()
        proc.wait(15)
    for parent in glob.glob(f"/sys/fs/cgroup/*/{DAEMON.get('cgroup')}") + glob.glob(f"/sys/fs/cgroup/{DAEMON.get('cgroup')}"):
        os.rmdir(parent)
    shutil.rmtree(DAEMON.get("base", "/nonexistent"), ignore_errors=True)


def check(module) -> list:
    if os.geteuid() != 0:
        DAEMON["error"] = "the end-to-end checks need root (they start a minidockerd)"
    else:
        _start_daemon()
    try:
        return run_checks(ALL_CHECKS, module, timeout=TIMEOUT)
    finally:
        _stop_daemon()
        DAEMON.clear()


if __name__ == "__main__":
    sys.exit(script_main(sys.argv[1:], check, REFERENCE, HERE / "skeleton.py", "lab 13 (a tiny builder)"))

"""API fidelity (issue 11 point 10): places where docker-py and the docker CLI used to see a
difference from dockerd — attach to an exited container, exec framing, health checks, update,
distribution/save/load/pull corners. Each through docker-py or the docker CLI against the session's
test daemon."""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from conftest import need_tool

pytestmark = pytest.mark.privileged


def docker(daemon, *args, input=None, timeout=60):
    return subprocess.run([need_tool("docker"), *args], input=input, capture_output=True,
                          env=daemon.env(), timeout=timeout)


def ok(r) -> str:
    assert r.returncode == 0, (r.args, r.stdout, r.stderr)
    return r.stdout.decode()


@pytest.fixture
def client(daemon):
    import docker as dockerpy
    c = dockerpy.DockerClient(base_url=daemon.host, timeout=30)
    yield c
    c.close()


# ---- attach -----------------------------------------------------------------------------------
def test_attach_to_exited_container_ends_at_once_and_logs_replays(daemon, client):
    c = client.containers.run("busybox", ["sh", "-c", "echo out-line; echo err-line >&2"], detach=True)
    try:
        assert c.wait(timeout=20)["StatusCode"] == 0
        t0 = time.monotonic()
        # docker-py always sends stream=1; with logs=0 nothing is copied and the connection ends at
        # once (it used to hang until the client's timeout)
        assert client.api.attach(c.id, stdout=True, stderr=True) == b""
        raw = client.api.attach(c.id, stdout=True, stderr=True, stream=False, logs=True, demux=True)
        assert raw == (b"out-line\n", b"err-line\n"), raw
        only_out = client.api.attach(c.id, stdout=True, stderr=False, logs=True, demux=True)
        assert only_out == (b"out-line\n", None), only_out
        gen = client.api.attach(c.id, stdout=True, stderr=True, stream=True, logs=False)
        assert list(gen) == []
        assert time.monotonic() - t0 < 10
        # the docker CLI: attach to a stopped container is refused by the client itself; the
        # API with stream=1&logs=1 replays and ends.
        status, body = daemon.api("POST", f"/containers/{c.id}/attach?stream=1&logs=1&stdout=1", timeout=10)
        assert status == 200 and b"out-line" in body and b"err-line" not in body
    finally:
        c.remove(force=True)


def test_attach_logs_on_running_container_replays_then_streams(daemon, client):
    c = client.containers.run("busybox", ["sh", "-c", "echo before; read x; echo after-$x"],
                              detach=True, stdin_open=True)
    try:
        deadline = time.monotonic() + 10
        while b"before" not in c.logs() and time.monotonic() < deadline:
            time.sleep(0.05)
        sock = client.api.attach_socket(c.id, params={"stdin": 1, "stdout": 1, "stream": 1, "logs": 1})
        sock._sock.sendall(b"go\n")
        got = b""
        sock._sock.settimeout(10)
        while b"after-go" not in got:
            chunk = sock._sock.recv(4096)
            if not chunk:
                break
            got += chunk
        sock.close()
        assert b"before" in got and b"after-go" in got, got
        assert got.index(b"before") < got.index(b"after-go")
    finally:
        c.remove(force=True)


# ---- exec framing -----------------------------------------------------------------------------
def test_exec_framing_follows_the_start_requests_tty(daemon, client):
    c = client.containers.run("busybox", ["sleep", "60"], detach=True)
    try:
        cmd = ["sh", "-c", "echo to-out; echo to-err >&2"]
        # created without a TTY, started with Tty=true: raw, unframed bytes (no 8-byte headers)
        eid = client.api.exec_create(c.id, cmd, tty=False)["Id"]
        out = client.api.exec_start(eid, tty=True)
        assert sorted(out.split()) == [b"to-err", b"to-out"], out
        # created with a TTY, started with Tty=false: the pty's bytes, framed as stdout
        eid = client.api.exec_create(c.id, cmd, tty=True)["Id"]
        out = client.api.exec_start(eid, tty=False, demux=True)
        assert out[0].replace(b"\r", b"") == b"to-out\nto-err\n" and out[1] is None, out
        # the usual pairs still work
        eid = client.api.exec_create(c.id, cmd, tty=False)["Id"]
        assert client.api.exec_start(eid, tty=False, demux=True) == (b"to-out\n", b"to-err\n")
    finally:
        c.remove(force=True)

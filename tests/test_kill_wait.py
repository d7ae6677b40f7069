"""`kill` with SIGKILL answers once the container has stopped, as dockerd does (daemon/kill.go):
an `inspect` right after it says "exited", never "running"; a `wait` that races the container's
removal gets a whole answer, never a cut one (issue 11, point 10)."""
from __future__ import annotations

import http.client
import json
import threading

import pytest

pytestmark = pytest.mark.privileged


def test_inspect_right_after_kill_says_exited(daemon):
    for _ in range(3):   # a race when broken: a few rounds make it show
        status, body = daemon.api("POST", "/containers/create", {"Image": "busybox", "Cmd": ["sleep", "1000"]})
        assert status == 201, body
        cid = body["Id"]
        try:
            assert daemon.api("POST", f"/containers/{cid}/start")[0] == 204
            assert daemon.api("POST", f"/containers/{cid}/kill")[0] == 204
            state = daemon.api("GET", f"/containers/{cid}/json")[1]["State"]
            assert (state["Status"], state["Running"], state["ExitCode"]) == ("exited", False, 137)
        finally:
            daemon.api("DELETE", f"/containers/{cid}?force=1")


def test_a_silent_control_client_does_not_stall_the_monitor(daemon):
    """The monitor serves its control socket on one thread: a client that connected but has not sent
    its request yet (the daemon's watcher, its event loop busy) must not hold up a ``kill``, nor
    lose the watcher its ``wait`` (it then reported 255 "monitor disappeared" instead of 137)."""
    import os
    import socket
    from minidocker.runtime import monitor
    status, body = daemon.api("POST", "/containers/create", {"Image": "busybox", "Cmd": ["sleep", "1000"]})
    assert status == 201, body
    cid = body["Id"]
    silent = None
    try:
        assert daemon.api("POST", f"/containers/{cid}/start")[0] == 204
        cdir = os.path.join(daemon.root, "containers", cid)
        silent = monitor.connect_ctl(cdir, 5)            # connected, request not sent
        try:
            assert monitor.request(cdir, {"op": "state"}, timeout=2)["started"] is True
        except socket.timeout:
            pytest.fail("the monitor did not answer while another client had not sent its request")
        silent.sendall(b'{"op":"wait"}\n')             # it may still send it, late
        assert daemon.api("POST", f"/containers/{cid}/kill", timeout=4)[0] == 204
        assert json.loads(silent.makefile("rb").readline())["exit_code"] == 137
        state = daemon.api("GET", f"/containers/{cid}/json")[1]["State"]
        assert (state["Status"], state["ExitCode"], state["Error"]) == ("exited", 137, "")
    finally:
        if silent is not None:
            silent.close()
        daemon.api("DELETE", f"/containers/{cid}?force=1")


def test_kill_with_another_signal_does_not_wait(daemon):
    """SIGUSR1 is not fatal to a shell that traps it: kill answers at once, the container runs on."""
    status, body = daemon.api("POST", "/containers/create",
                              {"Image": "busybox", "Cmd": ["sh", "-c", "trap '' USR1; sleep 1000"]})
    assert status == 201, body
    cid = body["Id"]
    try:
        assert daemon.api("POST", f"/containers/{cid}/start")[0] == 204
        assert daemon.api("POST", f"/containers/{cid}/kill?signal=SIGUSR1", timeout=5)[0] == 204
        assert daemon.api("GET", f"/containers/{cid}/json")[1]["State"]["Running"] is True
    finally:
        daemon.api("DELETE", f"/containers/{cid}?force=1")


def test_wait_racing_a_removal_is_answered_whole(daemon):
    """wait?condition=removed sent together with the DELETE (as `run --rm` races an auto-remove):
    either 404 (already gone) or 200 with the exit code, never a response cut after its head."""
    answers = []
    for _ in range(30):   # the window is small: a bounded number of rounds makes it show
        status, body = daemon.api("POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"]})
        assert status == 201, body
        cid, out = body["Id"], {}
        both = threading.Barrier(2)

        def wait():
            both.wait()
            try:
                out["wait"] = daemon.api("POST", f"/containers/{cid}/wait?condition=removed", timeout=30)
            except http.client.HTTPException as e:
                out["wait"] = repr(e)

        def remove():
            both.wait()
            out["rm"] = daemon.api("DELETE", f"/containers/{cid}")[0]

        threads = [threading.Thread(target=wait), threading.Thread(target=remove)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert out["rm"] == 204
        w = out["wait"]
        answers.append("cut: " + w if isinstance(w, str) else json.dumps(w) if w[0] == 200 else w[0])
    assert set(answers) <= {json.dumps([200, {"StatusCode": 0}]), 404}, answers

"""`kill` with SIGKILL answers once the container has stopped, as dockerd does (daemon/kill.go):
an `inspect` right after it says "exited", never "running" (issue 11, point 10)."""
from __future__ import annotations

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

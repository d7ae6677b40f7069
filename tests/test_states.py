"""The container state machine is the engine's (issue 11, point 3): the table ``rules.TRANSITIONS``
is what the daemon enforces — a refused move is docker's 409 with docker's words — and every move
emits its event, ``pause``/``unpause`` included. The unit tests need no daemon; the rest run one."""
from __future__ import annotations

import ast
import json
import time
import urllib.parse
from pathlib import Path

import pytest

from minidocker.daemon import rules, state

DAEMON = Path(state.__file__).parent
STATUS_FLAGS = {"Status", "Running", "Paused", "Restarting", "Dead"}


# ---- the table and transition(), without a daemon ------------------------------------------------

class FakeContainer:
    def __init__(self, status, cid="c0ffee", name="box", directory="/nonexistent/state-test"):
        self.id, self.name, self.dir = cid, name, directory
        self.state = {**state.flags(status), "ExitCode": 0}
        self.after_exit = []
        self.saved = 0

    def save(self):
        self.saved += 1


def test_every_state_of_docker_has_a_row_and_every_target_is_a_state():
    assert set(rules.TRANSITIONS) == set(state.STATES)
    targets = {t for row in rules.TRANSITIONS.values() for t in row.values()}
    assert targets <= set(state.STATES) | {state.REMOVED}
    assert set(state.EVENTS) >= {a for row in rules.TRANSITIONS.values() for a in row}


def test_transition_moves_persists_and_emits(tmp_path):
    c = FakeContainer("running", directory=str(tmp_path))
    seen = []
    assert state.transition(c, "pause", lambda c, ev, **a: seen.append(ev)) == "paused"
    assert (c.state["Status"], c.state["Paused"], c.state["Running"]) == ("paused", True, True)
    assert c.saved == 1 and seen == ["pause"]
    state.transition(c, "unpause", lambda c, ev, **a: seen.append(ev))
    assert c.state["Status"] == "running" and not c.state["Paused"] and seen == ["pause", "unpause"]


def test_stop_is_a_request_whose_event_follows_die():
    c = FakeContainer("running")
    seen = []
    emit = lambda c, ev, **a: seen.append(ev)  # noqa: E731
    assert state.transition(c, "stop", emit) == "running"      # nothing moves until the exit
    state.transition(c, "kill", emit, signal=15)
    state.transition(c, "exit", emit, {"ExitCode": 143}, exitCode=143)
    assert seen == ["kill", "die", "stop"] and c.state["Status"] == "exited"


@pytest.mark.parametrize("status,action,message", [
    ("exited", "pause", "Container c0ffee is not running"),
    ("paused", "pause", "Container c0ffee is already paused"),
    ("running", "unpause", "Container c0ffee is not paused"),
    ("exited", "kill", "Cannot kill container: c0ffee: Container c0ffee is not running"),
    ("restarting", "kill", "Cannot kill container: c0ffee: Container c0ffee is restarting, wait until "
                           "the container is running"),
    ("running", "rm", 'cannot remove container "/box": container is running: stop the container before '
                      "removing or force remove"),
    ("paused", "rm", 'cannot remove container "/box": container is paused and must be unpaused first'),
    ("paused", "start", "cannot start a paused container, try unpause instead"),
    ("removing", "start", "container c0ffee is marked for removal and cannot be started"),
])
def test_refused_transitions_are_conflicts_in_dockers_words(status, action, message):
    assert rules.next_state(status, action) is None
    c = FakeContainer(status)
    with pytest.raises(state.Conflict) as e:
        state.transition(c, action, lambda *a, **k: pytest.fail("a refused move emitted an event"))
    assert str(e.value) == message
    assert c.state["Status"] == status and c.saved == 0


@pytest.mark.parametrize("status,action", [("running", "start"), ("exited", "stop"), ("created", "stop")])
def test_no_op_moves_are_not_modified(status, action):
    with pytest.raises(state.NotModified):
        state.check(FakeContainer(status), action)


def _status_writes(tree: ast.AST) -> list[int]:
    """Lines that write a status flag: ``x.state.update(Status=…)``, ``x.state["Status"] = …``,
    ``x.state.update({"Status": …})``. Only a container's ``.state`` counts (a health record has a
    "Status" of its own: daemon/health.py)."""
    def is_state(expr) -> bool:
        return isinstance(expr, ast.Attribute) and expr.attr == "state"

    lines = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "update"
                and is_state(node.func.value)):
            if any(k.arg in STATUS_FLAGS for k in node.keywords):
                lines.append(node.lineno)
            for a in node.args:
                if isinstance(a, ast.Dict) and any(isinstance(k, ast.Constant) and k.value in STATUS_FLAGS
                                                   for k in a.keys):
                    lines.append(node.lineno)
        if isinstance(node, (ast.Assign, ast.AugAssign)):
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if (isinstance(t, ast.Subscript) and is_state(t.value) and isinstance(t.slice, ast.Constant)
                        and t.slice.value in STATUS_FLAGS):
                    lines.append(node.lineno)
    return sorted(lines)


def test_the_engine_changes_a_status_only_through_transition():
    """No daemon module but state.py writes ``State.Status`` (or a flag derived from it)."""
    offenders = {}
    for path in sorted(DAEMON.glob("*.py")):
        if path.name == "state.py":
            continue
        lines = _status_writes(ast.parse(path.read_text()))
        if lines:
            offenders[path.name] = lines
    assert offenders == {}
    # ... and the checker does catch one (it would pass vacuously otherwise).
    assert _status_writes(ast.parse('c.state.update(Status="running")\nc.state["Paused"] = True')) == [1, 2]
    assert _status_writes(ast.parse('health.update(Status="healthy")\nhealth["Status"] = "unhealthy"')) == []


def test_every_action_the_engine_takes_is_in_the_table():
    """The literal actions passed to transition()/check() anywhere in the daemon exist in the table."""
    actions = {a for row in rules.TRANSITIONS.values() for a in row}
    used = set()
    for path in DAEMON.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                    "transition", "check") and len(node.args) >= 2:
                arg = node.args[1]
                if isinstance(arg, ast.Constant):
                    used.add(arg.value)
                elif isinstance(arg, ast.IfExp):
                    used |= {arg.body.value, arg.orelse.value}
    assert used, "no transition() call found in the daemon"
    assert used <= actions, used - actions
    assert {"start", "exit", "pause", "unpause", "kill", "stop", "rm", "destroy", "policy"} <= used


def test_a_status_written_around_transition_is_refused():
    c = FakeContainer("running")
    with pytest.raises(ValueError):
        state.record(c, Status="exited")
    with pytest.raises(ValueError):
        state.transition(c, "pause", lambda *a, **k: None, {"Paused": False})


# ---- on the real daemon -----------------------------------------------------------------------

def _create(daemon, cmd=("sleep", "1000"), name=None):
    path = "/containers/create" + (f"?name={name}" if name else "")
    status, body = daemon.api("POST", path, {"Image": "busybox", "Cmd": list(cmd)})
    assert status == 201, body
    return body["Id"]


def _events(daemon, cid: str, since: float) -> list[str]:
    q = urllib.parse.urlencode({"since": f"{since:.9f}", "until": f"{time.time():.9f}",
                                "filters": json.dumps({"container": [cid]})})
    status, raw = daemon.api("GET", f"/events?{q}")
    assert status == 200
    if isinstance(raw, dict):  # a single event parses as one JSON object
        return [raw["Action"]]
    return [json.loads(line)["Action"] for line in (raw or b"").splitlines() if line.strip()]


@pytest.mark.privileged
def test_refused_transitions_are_409_with_dockers_message(daemon):
    cid = _create(daemon, name="statebox")
    try:
        def refused(path, message, method="POST"):
            status, body = daemon.api(method, path)
            assert (status, body["message"]) == (409, message)

        refused(f"/containers/{cid}/pause", f"Container {cid} is not running")
        refused(f"/containers/{cid}/unpause", f"Container {cid} is not paused")
        refused(f"/containers/{cid}/kill", f"Cannot kill container: {cid}: Container {cid} is not running")
        assert daemon.api("POST", f"/containers/{cid}/start")[0] == 204
        assert daemon.api("POST", f"/containers/{cid}/start")[0] == 304
        refused(f"/containers/{cid}", 'cannot remove container "/statebox": container is running: stop the '
                "container before removing or force remove", method="DELETE")
        assert daemon.api("POST", f"/containers/{cid}/pause")[0] == 204
        refused(f"/containers/{cid}/pause", f"Container {cid} is already paused")
        refused(f"/containers/{cid}/start", "cannot start a paused container, try unpause instead")
        refused(f"/containers/{cid}", 'cannot remove container "/statebox": container is paused and must be '
                "unpaused first", method="DELETE")
        st = daemon.api("GET", f"/containers/{cid}/json")[1]["State"]
        assert (st["Status"], st["Paused"], st["Running"]) == ("paused", True, True)
    finally:
        assert daemon.api("DELETE", f"/containers/{cid}?force=1")[0] == 204


@pytest.mark.privileged
def test_every_transition_emits_its_event_pause_and_unpause_included(daemon):
    since = time.time()
    cid = _create(daemon, ("sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"))
    try:
        for verb in ("start", "pause", "unpause", "pause"):
            assert daemon.api("POST", f"/containers/{cid}/{verb}")[0] == 204
        # A stop of a paused container thaws it (unpause), signals it (kill), sees it exit (die),
        # then reports the stop.
        assert daemon.api("POST", f"/containers/{cid}/stop?t=5")[0] == 204
        assert daemon.api("GET", f"/containers/{cid}/json")[1]["State"]["Status"] == "exited"
    finally:
        assert daemon.api("DELETE", f"/containers/{cid}?force=1")[0] == 204
    actions = _events(daemon, cid, since)
    assert actions == ["create", "start", "pause", "unpause", "pause", "kill", "unpause", "die", "stop",
                       "destroy"], actions

"""Every input validated, never a 500 (minidocker/daemon/validate.py): query parameters and JSON bodies
checked against the API's v1.50 types with Go's decoding rules, on the real daemon, over raw HTTP where
a client would not send such a request. Plus the API-fidelity points that ride on it (case-insensitive
keys, null, StopTimeout, Runtime, LogConfig, wait without Error, swarm/plugin answers) and a
schema-driven fuzz run of the served endpoints with a bounded budget."""
from __future__ import annotations

import http.client
import io
import json
import os
import random
import subprocess
import sys
import tarfile
import time

import pytest

from conftest import REPO, need_tool

pytestmark = pytest.mark.privileged


def raw(daemon, method: str, path: str, body: bytes | None = None, ctype="application/json", timeout=30):
    """A request with an exact body (bytes, not re-encoded JSON): (status, parsed JSON or bytes)."""
    return daemon.api(method, path, body, timeout=timeout, ctype=ctype)


def message(reply) -> str:
    return reply.get("message", "") if isinstance(reply, dict) else repr(reply)


@pytest.fixture(scope="module")
def running(daemon):
    """A running busybox container for the tests that need one (removed at the end)."""
    st, r = daemon.api("POST", "/containers/create?name=val-running", {"Image": "busybox", "Cmd": ["sleep", "300"]})
    assert st == 201, r
    assert daemon.api("POST", "/containers/val-running/start")[0] == 204
    yield r["Id"]
    daemon.api("DELETE", "/containers/val-running?force=1")


def container_ids(daemon) -> set[str]:
    return {c["Id"] for c in daemon.api("GET", "/containers/json?all=1")[1]}


# ---- query parameters ---------------------------------------------------------------------------

@pytest.mark.parametrize("verb", ["stop", "restart"])
@pytest.mark.parametrize("t", ["abc", "0.5", "1e3", "99999999999999999999"])
def test_stop_and_restart_timeouts_must_be_integers(daemon, verb, t):
    st, r = daemon.api("POST", "/containers/create?name=val-t", {"Image": "busybox", "Cmd": ["true"]})
    assert st == 201, r
    try:
        st, r = daemon.api("POST", f"/containers/val-t/{verb}?t={t}")
        assert st == 400, r
        kind = "value out of range" if t.isdigit() else "invalid syntax"
        assert message(r) == f'strconv.Atoi: parsing "{t}": {kind}'
        st, r = daemon.api("POST", f"/containers/val-t/{verb}?t=1")  # a good value still works
        assert st in (204, 304), r
    finally:
        daemon.api("DELETE", "/containers/val-t?force=1")


# ---- create ------------------------------------------------------------------------------------

@pytest.mark.parametrize("body, field, gotype", [
    (b'{"Image": ["busybox"]}', "CreateRequest.Image", "string"),
    (b'{"Image": 1e400}', "CreateRequest.Image", "string"),
    (b'{"Image": "busybox", "HostConfig": [1]}', "CreateRequest.HostConfig", "HostConfig"),
    (b'{"Image": "busybox", "Hostname": 5}', "CreateRequest.Hostname", "string"),
    (b'{"Image": "busybox", "WorkingDir": 5}', "CreateRequest.WorkingDir", "string"),
    (b'{"Image": "busybox", "Cmd": {"a": 1}}', "CreateRequest.Cmd", "[]string"),
    (b'{"Image": "busybox", "HostConfig": {"Memory": 1.5}}', "CreateRequest.HostConfig.Memory", "int64"),
    (b'{"Image": "busybox", "HostConfig": {"Memory": 1e400}}', "CreateRequest.HostConfig.Memory", "int64"),
    (b'{"Image": "busybox", "HostConfig": {"Memory": 9223372036854775808}}', "CreateRequest.HostConfig.Memory",
     "int64"),
    (b'{"Image": "busybox", "Tty": "yes"}', "CreateRequest.Tty", "bool"),
])
def test_create_refuses_what_go_cannot_decode(daemon, body, field, gotype):
    before = container_ids(daemon)
    st, r = raw(daemon, "POST", "/containers/create", body)
    assert st == 400, r
    assert message(r).startswith("invalid JSON: json: cannot unmarshal "), r
    assert message(r).endswith(f"into Go struct field {field} of type {gotype}"), r
    assert container_ids(daemon) == before  # nothing written


@pytest.mark.parametrize("body", [b'{"Image": NaN}', b'{"Image": "busybox",}', b'[1', b'{"Image": "a\\u0000b"}'])
def test_create_refuses_malformed_json(daemon, body):
    st, r = raw(daemon, "POST", "/containers/create", body)
    assert st == 400, r
    assert message(r).startswith("invalid") and "Traceback" not in message(r), r


def test_create_decodes_as_go_does(daemon):
    """What the docker CLI and docker-py send: nulls, a string Cmd, keys in any case."""
    body = {"image": "busybox", "Cmd": "true", "Env": None, "Entrypoint": None, "hostname": "h1",
            "Labels": {"a": None, "b": "x"}, "StopTimeout": 3, "unknownKey": [1, {"x": None}],
            "HostConfig": {"Binds": None, "logconfig": {"Type": "none", "Config": None}, "Runtime": "runc"}}
    st, r = daemon.api("POST", "/containers/create?name=val-go", body)
    assert st == 201, r
    try:
        st, c = daemon.api("GET", "/containers/val-go/json")
        assert st == 200
        cfg = c["Config"]
        assert (cfg["Hostname"], cfg["Cmd"], cfg["Labels"], cfg["StopTimeout"]) == ("h1", ["true"], {"a": "", "b": "x"}, 3)
        assert c["HostConfig"]["LogConfig"]["Type"] == "none"
        assert c["HostConfig"]["Runtime"] == "runc"
        st, r = daemon.api("GET", "/containers/val-go/logs?stdout=1")
        assert (st, message(r)) == (501, "configured logging driver does not support reading")
    finally:
        daemon.api("DELETE", "/containers/val-go?force=1")


def test_stop_timeout_is_used_by_stop(daemon):
    """Config.StopTimeout: a container that ignores SIGTERM is killed after it, not after 10 s."""
    st, r = daemon.api("POST", "/containers/create?name=val-stopt",
                       {"Image": "busybox", "Cmd": ["sh", "-c", "trap '' TERM; while :; do sleep 1; done"],
                        "StopTimeout": 1})
    assert st == 201, r
    try:
        assert daemon.api("POST", "/containers/val-stopt/start")[0] == 204
        t0 = time.monotonic()
        assert daemon.api("POST", "/containers/val-stopt/stop")[0] == 204
        assert time.monotonic() - t0 < 8
        assert daemon.api("GET", "/containers/val-stopt/json")[1]["State"]["Status"] == "exited"
    finally:
        daemon.api("DELETE", "/containers/val-stopt?force=1")


@pytest.mark.parametrize("host, words", [
    ({"Runtime": "kata"}, "unknown or invalid runtime name: kata"),
    ({"LogConfig": {"Type": "syslog"}}, "logger: no log driver named 'syslog' is registered"),
    ({"LogConfig": {"Type": "", "Config": {"bogus": "1"}}}, "unknown log opt 'bogus' for json-file log driver"),
])
def test_create_refuses_runtimes_and_log_drivers_it_does_not_have(daemon, host, words):
    before = container_ids(daemon)
    st, r = daemon.api("POST", "/containers/create", {"Image": "busybox", "HostConfig": host})
    assert (st, message(r)) == (400, words)
    assert container_ids(daemon) == before


def test_the_docker_cli_sees_dockers_words(daemon):
    docker = need_tool("docker")
    r = subprocess.run([docker, "create", "--runtime", "kata", "busybox"], capture_output=True, text=True,
                       env=daemon.env(), timeout=60)
    assert r.returncode != 0 and "unknown or invalid runtime name: kata" in r.stderr, r
    r = subprocess.run([docker, "create", "--stop-timeout", "7", "--name", "val-cli", "busybox", "true"],
                       capture_output=True, text=True, env=daemon.env(), timeout=60)
    assert r.returncode == 0, r
    try:
        assert daemon.api("GET", "/containers/val-cli/json")[1]["Config"]["StopTimeout"] == 7
    finally:
        daemon.api("DELETE", "/containers/val-cli?force=1")


def test_mount_type_is_a_string_for_the_validator(daemon, tmp_path):
    """``Mount.Type`` is ``allOf: [$ref: MountType]``, a named *string* (an enum), not a struct: the
    docker CLI's ``--mount type=bind`` must reach the daemon's own answer (success, or the clear
    refusal of what it does not support), never a decoding error."""
    docker = need_tool("docker")
    r = subprocess.run([docker, "create", "--name", "val-mount", "--mount", f"type=bind,src={tmp_path},dst=/x",
                        "busybox", "true"], capture_output=True, text=True, env=daemon.env(), timeout=60)
    try:
        assert "cannot unmarshal" not in r.stderr, r.stderr
        assert r.returncode == 0 or "HostConfig.Mounts" in r.stderr, r
    finally:
        daemon.api("DELETE", "/containers/val-mount?force=1")
    st, reply = daemon.api("POST", "/containers/create", {"Image": "busybox", "HostConfig": {
        "Mounts": [{"Type": {"x": 1}, "Target": "/x"}]}})
    assert st == 400 and "cannot unmarshal object into Go struct field" in message(reply), reply
    assert "HostConfig.Mounts.Type of type string" in message(reply), reply


# ---- exec --------------------------------------------------------------------------------------

def test_exec_create_and_start_bodies(daemon, running):
    st, r = daemon.api("POST", f"/containers/{running}/exec", {"Cmd": ["true"], "WorkingDir": ["/"]})
    assert st == 400 and message(r).endswith("ExecOptions.WorkingDir of type string"), r
    st, r = daemon.api("POST", "/exec/nonexistent/start", {"Detach": True, "ConsoleSize": [-1795, 80]})
    assert st == 400 and "number -1795" in message(r) and "ExecStartOptions.ConsoleSize" in message(r), r
    st, r = daemon.api("POST", "/exec/nonexistent/start", {"Detach": True, "ConsoleSize": [24, 80]})
    assert st == 404, r  # the body was fine: now the exec is looked up
    # Keys match case-insensitively, as Go's decoder does: detachKeys fills DetachKeys.
    st, r = daemon.api("POST", f"/containers/{running}/exec", {"cmd": ["true"], "detachKeys": "ctrl-x"})
    assert st == 201, r
    st, ex = daemon.api("GET", f"/exec/{r['Id']}/json")
    assert st == 200 and ex["DetachKeys"] == "ctrl-x", ex


# ---- archive -----------------------------------------------------------------------------------

def test_archive_path_with_a_nul_byte(daemon, running):
    for method in ("GET", "HEAD", "PUT"):
        st, r = raw(daemon, method, f"/containers/{running}/archive?path=/etc%00x", b"" if method == "PUT" else None)
        assert st == 400, (method, r)


def test_archive_put_of_something_not_a_tar(daemon, running):
    st, r = raw(daemon, "PUT", f"/containers/{running}/archive?path=/tmp", b"this is not a tar" * 100,
                ctype="application/x-tar")
    assert st == 400, r
    assert message(r).startswith("Error processing tar file") and "Traceback" not in message(r), r
    buf = io.BytesIO()  # a real tar still goes in
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("val.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    st, r = raw(daemon, "PUT", f"/containers/{running}/archive?path=/tmp", buf.getvalue(), ctype="application/x-tar")
    assert st == 200, r


def test_archive_get_reaps_its_helper_once(daemon, running):
    """The helper's exit status reaches the daemon: no "Unknown child process pid" warning."""
    before = daemon.logtext().count("Unknown child process pid")
    for _ in range(5):
        st, data = raw(daemon, "GET", f"/containers/{running}/archive?path=/etc/hostname")
        assert st == 200
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            assert tar.getnames() == ["hostname"]
    assert daemon.api("GET", "/_ping")[0] == 200  # the log is written before the next request is served
    assert daemon.logtext().count("Unknown child process pid") == before


# ---- deep JSON ---------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/containers/create", "/commit?container=x", "/exec/x/start"])
def test_json_nested_100000_deep(daemon, path):
    deep = b"[" * 100_000 + b"]" * 100_000
    for body in (deep, b'{"Image": "busybox", "Labels": {"x": ' + deep + b"}}",
                 b'{"Unknown": ' + deep + b"}"):
        st, r = raw(daemon, "POST", path, body)
        assert st == 400, r
        assert "exceeded max depth" in message(r) or "cannot unmarshal" in message(r), r
    st, r = daemon.api("GET", "/containers/json?filters=" + "%5B" * 5000 + "%5D" * 5000)
    assert (st, message(r)) == (400, "invalid filter"), r
    assert daemon.api("GET", "/_ping")[0] == 200


# ---- commit ------------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [{"Labels": [None, None]}, {"Cmd": 5}, {"Env": "A=1"}, {"ExposedPorts": [80]}])
def test_commit_with_a_bad_config_writes_no_image(daemon, body):
    st, r = daemon.api("POST", "/containers/create?name=val-commit", {"Image": "busybox", "Cmd": ["true"]})
    assert st == 201, r
    try:
        before = daemon.api("GET", "/images/json?all=1")[1]
        st, r = daemon.api("POST", "/commit?container=val-commit&repo=val-poison", body)
        assert st == 400 and message(r).startswith("invalid JSON: json: cannot unmarshal"), r
        st, after = daemon.api("GET", "/images/json?all=1")
        assert st == 200 and after == before
        assert daemon.api("GET", "/images/val-poison/json")[0] == 404
        # And a good one goes through, keys in any case.
        st, r = daemon.api("POST", "/commit?container=val-commit&repo=val-good", {"labels": {"k": "v"}, "cmd": "sh"})
        assert st == 201, r
        st, img = daemon.api("GET", "/images/val-good/json")
        assert img["Config"]["Labels"] == {"k": "v"} and img["Config"]["Cmd"] == ["sh"], img["Config"]
        assert daemon.api("DELETE", "/images/val-good")[0] == 200
    finally:
        daemon.api("DELETE", "/containers/val-commit?force=1")


# ---- wait, swarm, plugins ----------------------------------------------------------------------

def test_wait_omits_error_when_there_is_none(daemon):
    st, r = daemon.api("POST", "/containers/create?name=val-wait", {"Image": "busybox", "Cmd": ["sh", "-c", "exit 3"]})
    assert st == 201, r
    try:
        assert daemon.api("POST", "/containers/val-wait/start")[0] == 204
        st, r = daemon.api("POST", "/containers/val-wait/wait")
        assert (st, r) == (200, {"StatusCode": 3})
    finally:
        daemon.api("DELETE", "/containers/val-wait?force=1")


NOT_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
               'to connect this node to swarm and try again.')


@pytest.mark.parametrize("method, path, status, words", [
    ("GET", "/swarm", 503, NOT_MANAGER),
    ("GET", "/services", 503, NOT_MANAGER),
    ("GET", "/nodes/abc", 503, NOT_MANAGER),
    ("GET", "/tasks", 503, NOT_MANAGER),
    ("GET", "/secrets", 503, NOT_MANAGER),
    ("GET", "/configs", 503, NOT_MANAGER),
    ("POST", "/swarm/leave", 503, "This node is not part of a swarm"),
    ("GET", "/plugins/foo/json", 404, 'plugin "foo" not found'),
])
def test_swarm_and_plugins_answer_as_a_dockerd_not_in_swarm_mode(daemon, method, path, status, words):
    st, r = daemon.api(method, "/v1.50" + path)
    assert (st, message(r)) == (status, words)


def test_plugin_list_is_empty(daemon):
    assert daemon.api("GET", "/plugins") == (200, [])
    docker = need_tool("docker")
    r = subprocess.run([docker, "service", "ls"], capture_output=True, text=True, env=daemon.env(), timeout=60)
    assert r.returncode == 1 and "This node is not a swarm manager" in r.stderr, r


# ---- cost --------------------------------------------------------------------------------------

def test_validation_costs_the_daemon_nothing_at_start():
    """No jsonschema or yaml on the daemon's path; the generated types load at the first request."""
    code = ("import sys, time; t = time.perf_counter(); import minidocker.daemon.main, minidocker.daemon.api; "
            "bad = {'jsonschema', 'yaml', 'fastjsonschema', 'minidocker.daemon.api_types'} & set(sys.modules); "
            "assert not bad, bad; t = time.perf_counter(); import minidocker.daemon.api_types; "
            "print(time.perf_counter() - t)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout) < 0.25  # a few ms from .pyc; generous for a loaded machine


def test_generated_types_match_the_swagger_file():
    """api_types.py is what the generator makes of the committed swagger file (PyYAML: a dev dependency)."""
    r = subprocess.run([sys.executable, "-m", "minidocker.daemon.validate_gen"], capture_output=True,
                       text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(REPO, "minidocker", "daemon", "api_types.py")) as f:
        assert f.read() == r.stdout, "api_types.py is stale: rerun python -m minidocker.daemon.validate_gen"


# ---- a schema-driven fuzz run ------------------------------------------------------------------
# Requests made from the API's own types (api_types.py): right-typed values mixed with wrong ones,
# nulls, huge numbers, odd strings, deep nesting, keys in random case. Bounded: FUZZ_REQUESTS requests
# or FUZZ_SECONDS, whichever comes first; its own daemon on a UNIX socket (prunes and deletes happen).
# Not fuzzed: what leaves the machine (pull, push, login, search, build) and what streams until the
# client leaves (events, attach, stats, wait).

FUZZ_REQUESTS, FUZZ_SECONDS = 1500, 20.0
FUZZ_SKIP = {("POST", "/images/create"), ("POST", "/images/{}/push"), ("POST", "/auth"), ("GET", "/events"),
             ("POST", "/containers/{}/attach"), ("GET", "/containers/{}/stats"), ("POST", "/containers/{}/wait"),
             ("GET", "/images/search"), ("POST", "/build"), ("GET", "/distribution/{}/json")}
ODD = [None, 5, -1, 0, 1.5, 10**30, True, "", "x", [], {}, [None], {"a": None}, "a\u0000b", "\ud800", "é" * 50]
ODD_QUERY = ["", "1", "0", "-1", "abc", "0.5", "true", "False", "99999999999999999999", "%00", "%ff", "{}",
             '{"status":["exited"]}', '{"dangling":["true"]}', '{"label":[{"a":1}]}', "[", "a" * 300]
ODD_STRINGS = ["", "busybox", "fz", "/", "/etc/hostname", "../../..", "ctrl-p,q", "SIGTERM", "abc", "a" * 300]


def served_operations() -> list[tuple[str, str]]:
    from minidocker.daemon import api, api_types, validate

    class Routes:
        def __init__(self):
            self.seen = []

        def route(self, method, pattern, handler=None):
            self.seen.append((method, validate.template_of(pattern)))
            return handler if handler is not None else (lambda fn: fn)

    routes = Routes()
    api.API(None, {}).register(routes)
    return sorted(op for op in set(routes.seen) if op in api_types.OPERATIONS and op not in FUZZ_SKIP)


def sample(rng: random.Random, node, defs: dict, depth: int = 0):
    """A value for a node of api_types: usually of the right type, sometimes not."""
    if rng.random() < 0.12 or depth > 5:
        return rng.choice(ODD)
    if node == "s":
        return rng.choice(ODD_STRINGS)
    if node == "b":
        return rng.random() < 0.5
    if node == "f":
        return rng.choice([0.0, 1.5, -2.25, 1e300])
    if node == "strslice":
        return rng.choice([["true"], "true", ["sh", "-c", "exit 0"], []])
    if node == "any":
        return rng.choice([1, "x", [1, "y"], {"k": [None]}])
    tag = node[0]
    if tag == "ref":
        return sample(rng, defs[node[1]], defs, depth)
    if tag == "i":
        return rng.choice([0, 1, -1, 2, 1024, 2**31, 2**63 - 1, -2**63])
    if tag == "a":
        return [sample(rng, node[1], defs, depth + 1) for _ in range(rng.randint(0, 3))]
    if tag == "m":
        return {rng.choice(["a", "80/tcp", "/tmp", ""]): sample(rng, node[1], defs, depth + 1)
                for _ in range(rng.randint(0, 2))}
    fields = list(node[2].values())
    out = {}
    for key, sub in rng.sample(fields, min(len(fields), rng.randint(0, 5))):
        key = key.lower() if rng.random() < 0.2 else key
        out[key] = sample(rng, sub, defs, depth + 1)
    return out


def fuzz_request(rng: random.Random, method: str, template: str, types) -> tuple[str, bytes | None]:
    from urllib.parse import quote
    path = template
    while "{}" in path:
        path = path.replace("{}", rng.choice(["fz", "busybox", "fuzz-nope", "0" * 64, "sha256:" + "0" * 64]), 1)
    query, body = types.OPERATIONS[(method, template)]
    params = []
    for name, node in query.items():
        if rng.random() < 0.5:
            value = rng.choice(ODD_QUERY if rng.random() < 0.5 else ODD_STRINGS)
            if name in ("t", "timeout") and value.startswith("-"):
                value = "1"  # a negative stop timeout waits for ever, as docker's does: not a hang to report
            if name == "follow":
                value = "0"  # logs -f streams until the client leaves: not a hang to report
            if name == "signal" and rng.random() < 0.5:
                value = "SIGSTOP"  # a stopped container must still be stoppable (the kill follows)
            params.append(f"{name}={value if value.startswith('%') else quote(value)}")
    target = "/v1.50" + quote(path) + ("?" + "&".join(params) if params else "")
    if body is not None:
        data = json.dumps(sample(rng, body[1], types.DEFS)).encode()
        if rng.random() < 0.05:
            data = b'{"a":' * 3000 + b"1" + b"}" * 3000
    elif method in ("PUT", "POST") and rng.random() < 0.5:
        data = rng.choice([b"", b"not a tar", bytes(rng.getrandbits(8) for _ in range(600))])
    else:
        data = None
    return target, data


@pytest.fixture
def fuzz_daemon():
    """A daemon of the fuzz run's own (it prunes and deletes), cleaned up as the session's is."""
    from conftest import _session_daemon
    yield from _session_daemon(None, cgroup_tag="-fuzz")


def test_fuzz_the_served_endpoints(fuzz_daemon):
    from minidocker.daemon import api_types
    d = fuzz_daemon
    st, r = d.api("POST", "/containers/create?name=fz",
                  {"Image": "busybox", "Cmd": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"]})
    assert st == 201, r
    ops = served_operations()
    assert len(ops) > 30
    seed = int(os.environ.get("MINIDOCKER_FUZZ_SEED", "11"))
    rng = random.Random(seed)
    failures, sent, deadline = [], 0, time.monotonic() + FUZZ_SECONDS
    while sent < FUZZ_REQUESTS and time.monotonic() < deadline:
        method, template = rng.choice(ops)
        target, data = fuzz_request(rng, method, template, api_types)
        try:
            st, r = raw(d, method, target, data, timeout=15)
        except (OSError, http.client.HTTPException) as e:
            failures.append((method, target, (data or b"")[:200], repr(e)))
            if not d.ping():
                break
            continue
        finally:
            sent += 1
        if st >= 500 and st not in (501, 503):
            failures.append((method, target, (data or b"")[:200], st, r))
    assert d.ping(), "the daemon stopped answering /_ping"
    assert not failures, f"seed {seed}, {sent} requests, {len(failures)} failures: {failures[:5]}"
    assert sent >= 100  # the budget was spent on requests, not on waiting


def test_log_rotation_options_are_warned_about_not_ignored(daemon):
    """max-size/max-file/compress are accepted (compose sends them) but logs are not rotated: said."""
    st, r = daemon.api("POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"],
                                                      "HostConfig": {"LogConfig": {"Type": "json-file",
                                                                                   "Config": {"max-size": "10m"}}}})
    assert st == 201, r
    try:
        assert any("max-size" in w and "not rotated" in w for w in r["Warnings"]), r["Warnings"]
    finally:
        daemon.api("DELETE", f"/containers/{r['Id']}?force=1")

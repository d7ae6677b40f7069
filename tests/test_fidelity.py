"""API fidelity (issue 11 point 10): places where docker-py and the docker CLI used to see a
difference from dockerd — attach to an exited container, exec framing, health checks.
Each through docker-py or the docker CLI against the session's
test daemon."""
from __future__ import annotations

import json
import time

import pytest

from test_daemon_api import docker, ok, until  # the same helpers as the daemon chapter's tests
from test_daemon_persistence import own_daemon  # noqa: F401 (a fixture: a daemon of the test's own)

pytestmark = pytest.mark.privileged


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


# ---- health checks ----------------------------------------------------------------------------
def health(daemon, name) -> dict:
    return json.loads(ok(docker(daemon, "inspect", name)))[0]["State"].get("Health") or {}


def test_health_cmd_flags_make_a_container_healthy(daemon):
    since = str(time.time())
    ok(docker(daemon, "run", "-d", "--name", "hc-ok", "--health-cmd", "echo probe-$((40+2))",
              "--health-interval", "200ms", "--health-retries", "2", "busybox", "sleep", "60"))
    try:
        h = until(lambda: (x := health(daemon, "hc-ok")).get("Status") == "healthy" and x, what="healthy", timeout=30)
        assert h["FailingStreak"] == 0 and h["Log"][-1]["ExitCode"] == 0
        assert h["Log"][-1]["Output"] == "probe-42\n"  # the shell ran it: CMD-SHELL
        assert "(healthy)" in ok(docker(daemon, "ps", "--filter", "name=hc-ok", "--format", "{{.Status}}"))
        assert "hc-ok" in ok(docker(daemon, "ps", "--filter", "health=healthy", "--format", "{{.Names}}"))
        assert "hc-ok" not in ok(docker(daemon, "ps", "--filter", "health=none", "--format", "{{.Names}}"))
        events = ok(docker(daemon, "events", "--since", since, "--until", str(time.time()),
                           "--filter", "container=hc-ok", "--format", "{{.Action}}"))
        assert "health_status: healthy" in events.splitlines(), events
        # the probe is an exec with exec's confinement: same capabilities, seccomp, no_new_privs
        probe = "grep -E '^(CapEff|CapBnd|Seccomp|NoNewPrivs)' /proc/self/status"
        ok(docker(daemon, "rm", "-f", "hc-ok"))
        ok(docker(daemon, "run", "-d", "--name", "hc-ok", "--health-cmd", probe,
                  "--health-interval", "200ms", "busybox", "sleep", "60"))
        h = until(lambda: (x := health(daemon, "hc-ok")).get("Status") == "healthy" and x, what="healthy", timeout=30)
        assert h["Log"][-1]["Output"] == ok(docker(daemon, "exec", "hc-ok", "sh", "-c", probe))
        assert "Seccomp:\t2" in h["Log"][-1]["Output"]
    finally:
        docker(daemon, "rm", "-f", "hc-ok")


def test_failing_and_timed_out_checks_make_it_unhealthy(daemon, client):
    c = client.containers.run("busybox", ["sleep", "60"], detach=True, healthcheck={
        "Test": ["CMD", "sh", "-c", "echo bad >&2; exit 3"], "Interval": 100_000_000, "Retries": 2})
    t = client.containers.run("busybox", ["sleep", "60"], detach=True, healthcheck={
        "Test": ["CMD-SHELL", "sleep 10"], "Interval": 100_000_000, "Timeout": 200_000_000, "Retries": 1})
    try:
        h = until(lambda: len((x := client.api.inspect_container(c.id)["State"]["Health"])["Log"]) == 5
                  and x["FailingStreak"] >= 6 and x, what="5 log entries", timeout=30)
        assert h["Status"] == "unhealthy"
        assert {e["ExitCode"] for e in h["Log"]} == {3} and h["Log"][0]["Output"] == "bad\n"
        assert "(unhealthy)" in ok(docker(daemon, "ps", "--filter", f"id={c.id}", "--format", "{{.Status}}"))
        h = until(lambda: (x := client.api.inspect_container(t.id)["State"]["Health"])["Status"] == "unhealthy"
                  and x, what="timeout", timeout=30)
        assert h["Log"][-1]["ExitCode"] == -1
        assert h["Log"][-1]["Output"] == "Health check exceeded timeout (0.2s)"
        # finished probes leave no exec record behind (at most the one in flight shows)
        assert len(client.api.inspect_container(c.id)["ExecIDs"] or []) <= 1
    finally:
        c.remove(force=True)
        t.remove(force=True)


def test_start_period_failures_do_not_count(daemon, client):
    c = client.containers.run("busybox", ["sleep", "60"], detach=True, healthcheck={
        "Test": ["CMD", "false"], "Interval": 100_000_000, "StartInterval": 100_000_000,
        "StartPeriod": 60_000_000_000, "Retries": 1})
    try:
        h = until(lambda: len((x := client.api.inspect_container(c.id)["State"]["Health"])["Log"]) >= 2 and x,
                  timeout=30, what="probes in the start period")
        assert h["Status"] == "starting" and h["FailingStreak"] == 0
    finally:
        c.remove(force=True)


def test_image_healthcheck_is_inherited_and_no_healthcheck_disables_it(daemon, client):
    base = client.containers.run("busybox", ["true"], detach=True)
    base.wait(timeout=20)
    image = base.commit(repository="hc-image", tag="t", conf={
        "Healthcheck": {"Test": ["CMD-SHELL", "echo from-image"], "Interval": 100_000_000}})
    try:
        assert client.api.inspect_image(image.id)["Config"]["Healthcheck"]["Test"] == ["CMD-SHELL", "echo from-image"]
        ok(docker(daemon, "run", "-d", "--name", "hc-img", "hc-image:t", "sleep", "60"))
        h = until(lambda: (x := health(daemon, "hc-img")).get("Status") == "healthy" and x, what="healthy", timeout=30)
        assert h["Log"][-1]["Output"] == "from-image\n"
        ok(docker(daemon, "run", "-d", "--name", "hc-none", "--no-healthcheck", "hc-image:t", "sleep", "60"))
        assert "Health" not in json.loads(ok(docker(daemon, "inspect", "hc-none")))[0]["State"]
        # minidocker's own CLI sends the same Healthcheck
        r = daemon.cli("create", "--name", "hc-md", "--health-cmd", "true", "--health-interval", "1m30s",
                       "--health-retries", "4", "busybox", "sleep", "60", check=True)
        hc = json.loads(ok(docker(daemon, "inspect", "hc-md")))[0]["Config"]["Healthcheck"]
        assert hc == {"Test": ["CMD-SHELL", "true"], "Interval": 90_000_000_000, "Retries": 4}, hc
        assert "health" not in r.stderr.decode().lower()  # no "not supported" warning any more
    finally:
        for n in ("hc-img", "hc-none", "hc-md"):
            docker(daemon, "rm", "-f", n)
        base.remove(force=True)
        client.images.remove("hc-image:t", force=True)


def test_health_timers_are_rearmed_after_a_daemon_restart(own_daemon):
    import signal as sig
    from conftest import Daemon
    from test_daemon_persistence import start_with
    d = own_daemon()
    ok(docker(d, "run", "-d", "--name", "hc-keep", "--health-cmd", "true", "--health-interval", "200ms",
              "busybox", "sleep", "120"))
    until(lambda: health(d, "hc-keep").get("Status") == "healthy", timeout=30, what="healthy")
    d.proc.send_signal(sig.SIGKILL)
    d.proc.wait()
    d2 = start_with(Daemon(d.base))
    try:
        restarted = health(d2, "hc-keep")
        assert restarted["Status"] == "healthy"  # what was recorded is kept
        last = restarted["Log"][-1]["Start"]
        # and the new daemon probes again: newer log entries appear
        until(lambda: health(d2, "hc-keep")["Log"][-1]["Start"] > last, timeout=30, what="a new probe")
    finally:
        d2.remove_all()
        d2.stop()


# ---- update -----------------------------------------------------------------------------------
def test_docker_update_changes_limits_live_and_the_restart_policy(daemon, client):
    from minidocker.cgroups.driver import read
    from test_cgroups import cgroup_of, control_dir
    cid = ok(docker(daemon, "run", "-d", "-m", "48m", "--pids-limit", "20", "busybox", "sleep", "100")).strip()
    try:
        cg = cgroup_of(daemon, cid)
        mem_file = "memory.limit_in_bytes" if cg.version == "v1" else "memory.max"
        assert read(control_dir(cg, "memory"), mem_file) == str(48 << 20)
        ok(docker(daemon, "update", "-m", "96m", "--memory-swap", "-1", "--pids-limit", "33",
                  "--restart", "on-failure:4", cid))
        # the running container's cgroup says the new values at once
        assert read(control_dir(cg, "memory"), mem_file) == str(96 << 20)
        assert read(control_dir(cg, "pids"), "pids.max") == "33"
        host = client.api.inspect_container(cid)["HostConfig"]
        assert host["Memory"] == 96 << 20 and host["PidsLimit"] == 33
        assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 4}
        # docker-py: the response carries docker's Warnings; bad values get create's errors
        assert "Warnings" in client.api.update_container(cid, cpu_shares=512)
        import docker as dockerpy
        with pytest.raises(dockerpy.errors.APIError, match="Minimum memory limit allowed is 6MB"):
            client.api.update_container(cid, mem_limit="1m")
        with pytest.raises(dockerpy.errors.APIError, match="cannot update KernelMemory"):
            client.api.update_container(cid, kernel_memory=1 << 26)
        # the next start applies the recorded limits (the bundle says them too)
        ok(docker(daemon, "restart", "-t", "1", cid))
        cg = cgroup_of(daemon, cid)
        assert read(control_dir(cg, "memory"), mem_file) == str(96 << 20)
        assert read(control_dir(cg, "pids"), "pids.max") == "33"
    finally:
        docker(daemon, "rm", "-f", cid)
    rm = ok(docker(daemon, "run", "-d", "--rm", "busybox", "sleep", "100")).strip()
    try:
        r = docker(daemon, "update", "--restart", "always", rm)
        assert r.returncode != 0 and b"AutoRemove is enabled" in r.stderr
    finally:
        docker(daemon, "rm", "-f", rm)


# ---- images: Parent, save by ID, load errors, distribution, unreachable registries --------------
def test_committed_image_has_its_parent(daemon, client):
    base_id = client.images.get("busybox").id
    c = client.containers.run("busybox", ["touch", "/made"], detach=True)
    try:
        c.wait(timeout=20)
        image = c.commit(repository="fid-parent", tag="1")
        assert image.attrs["Parent"] == base_id
        assert client.images.get("busybox").attrs["Parent"] == ""  # built, not committed: no parent
        listed = {i["Id"]: i for i in client.api.images()}
        assert listed[image.id]["ParentId"] == base_id
        assert ok(docker(daemon, "image", "inspect", "-f", "{{.Parent}}", "fid-parent:1")).strip() == base_id
    finally:
        c.remove(force=True)
        client.images.remove("fid-parent:1", force=True)


def test_save_by_id_writes_no_tags_and_bad_load_reports_in_the_stream(daemon, client, tmp_path):
    import tarfile
    image = client.images.get("busybox")
    ok(docker(daemon, "tag", "busybox", "fid-save:1"))
    try:
        for name, want in ((image.id, None), ("fid-save:1", ["fid-save:1"])):
            out = tmp_path / "save.tar"
            ok(docker(daemon, "save", "-o", str(out), name))
            with tarfile.open(out) as tar:
                manifest = json.load(tar.extractfile("manifest.json"))
                names = tar.getnames()
            assert [m["RepoTags"] for m in manifest] == [want], (name, manifest)
            assert ("repositories" in names) == (want is not None)
    finally:
        docker(daemon, "rmi", "fid-save:1")
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"definitely not a tar" * 100)
    r = docker(daemon, "load", "-i", str(junk))
    assert r.returncode != 0 and b"failed to load the archive" in r.stderr, r.stderr
    status, body = daemon.api("POST", "/images/load", junk.read_bytes(), ctype="application/x-tar")
    assert status == 200  # as dockerd: the head is out, the error is the stream's last message
    last = json.loads(body.strip().splitlines()[-1]) if isinstance(body, bytes) else body
    assert "failed to load the archive" in last["errorDetail"]["message"] == last["error"]


def test_pull_from_an_unreachable_registry_says_so_in_dockers_words(daemon):
    # conftest points Docker Hub names at a closed port on loopback (--default-registry)
    r = docker(daemon, "pull", "alpine:3")
    assert r.returncode != 0
    assert (b'Error response from daemon: Get "https://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: '
            b"connect: connection refused") in r.stderr, r.stderr
    r = docker(daemon, "pull", "127.0.0.1:1/some/thing")
    assert b'Get "https://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused' in r.stderr


def test_distribution_inspect_of_local_and_registry_images(daemon, client, tmp_path):
    from conftest import need_tool as need_tool_
    from registries import DistributionRegistry
    local = client.images.get("busybox")
    data = client.images.get_registry_data("busybox")  # built offline: the local store answers
    assert data.id == local.attrs["Descriptor"]["digest"] and data.has_platform("linux/amd64")
    need_tool_("docker-registry")
    with DistributionRegistry(str(tmp_path / "reg")) as reg:
        ref = f"{reg.host}/fid/bb:1"
        ok(docker(daemon, "tag", "busybox", ref))
        try:
            out = ok(docker(daemon, "push", ref))
            pushed = out.split("digest: ", 1)[1].split()[0]
            ok(docker(daemon, "rmi", ref))  # not local any more: the registry answers
            status, body = daemon.api("GET", f"/distribution/{ref}/json")
            assert status == 200, body
            assert body["Descriptor"]["digest"] == pushed
            assert body["Platforms"] == [{"architecture": local.attrs["Architecture"], "os": "linux"}]
            import docker as dockerpy
            with pytest.raises(dockerpy.errors.NotFound):
                client.images.get_registry_data(f"{reg.host}/fid/bb:nope")
        finally:
            docker(daemon, "rmi", ref)


def test_default_registry_is_where_docker_hub_names_come_from(own_daemon, tmp_path):
    from conftest import need_tool as need_tool_
    from registries import DistributionRegistry
    need_tool_("docker-registry")
    with DistributionRegistry(str(tmp_path / "reg")) as reg:
        d = own_daemon("--default-registry", reg.host)
        ok(docker(d, "tag", "busybox", f"{reg.host}/library/fid-hub:1"))
        ok(docker(d, "push", f"{reg.host}/library/fid-hub:1"))
        # a Docker Hub name ("fid-hub" = docker.io/library/fid-hub) is fetched from the configured host
        out = ok(docker(d, "pull", "fid-hub:1"))
        assert "Downloaded newer image for fid-hub:1" in out or "Image is up to date for fid-hub:1" in out
        assert ok(docker(d, "run", "--rm", "fid-hub:1", "echo", "from the mirror")) == "from the mirror\n"
        r = docker(d, "pull", "fid-hub:nope")
        assert r.returncode != 0 and b"not found" in r.stderr

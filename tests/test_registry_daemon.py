"""The issue's "Done when": tag, push, rmi, pull, run through minidockerd -- with minidocker's CLI and
the real docker CLI, against a real registry without auth, with Basic auth and with token auth after
``login``; and skopeo pushing an image that minidocker pulls and runs.

These tests use a minidockerd of their own (they remove busybox, which the session's daemon keeps)
and a DOCKER_CONFIG directory of their own (never the user's ~/.docker).
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile

import pytest

from conftest import REPO, Daemon, need, need_root, need_tool
from registries import DistributionRegistry, TokenServer

pytestmark = pytest.mark.privileged
USERS = {"alice": "wonderland"}


@pytest.fixture(scope="module")
def mdaemon():
    need_root()
    need(os.path.exists("/bin/busybox"), "/bin/busybox (busybox-static)")
    base = tempfile.mkdtemp(prefix="mdreg-", dir="/tmp")
    d = Daemon(base)
    try:
        d.start()
        yield d
    finally:
        left = d.shutdown()
        assert not left, left


@pytest.fixture
def config_dir(tmp_path):
    path = tmp_path / "docker-config"
    path.mkdir()
    return str(path)


def md(d: Daemon, config: str, *args, input: bytes | None = None):
    return subprocess.run([sys.executable, "-m", "minidocker.cli.main", *args], input=input, capture_output=True,
                          env=d.env(DOCKER_CONFIG=config), timeout=120, cwd=REPO)


def docker(d: Daemon, config: str, *args, input: bytes | None = None):
    return subprocess.run([need_tool("docker"), *args], input=input, capture_output=True,
                          env=d.env(DOCKER_CONFIG=config), timeout=120)


def ok(r) -> str:
    assert r.returncode == 0, (r.args, r.stdout.decode(), r.stderr.decode())
    return r.stdout.decode()


def scenario(d: Daemon, config: str, host: str, cli, tag: str) -> None:
    """tag busybox H/bb:TAG && push && rmi H/bb:TAG busybox && pull H/bb:TAG && run --rm H/bb:TAG."""
    image = f"{host}/bb:{tag}"
    ok(cli(d, config, "tag", "busybox", image))
    out = ok(cli(d, config, "push", image))
    assert f"The push refers to repository [{host}/bb]" in out
    digest = d.api("GET", "/images/busybox/json")[1]["Id"]
    assert f"{tag}: digest: sha256:" in out and "size: " in out
    try:
        ok(cli(d, config, "rmi", image, "busybox"))
        assert d.api("GET", f"/images/{image}/json")[0] == 404
        assert d.api("GET", "/images/busybox/json")[0] == 404
        out = ok(cli(d, config, "pull", image))
        assert f"Status: Downloaded newer image for {image}" in out
        assert d.api("GET", f"/images/{image}/json")[1]["Id"] == digest
        r = cli(d, config, "run", "--rm", image, "echo", "pulled and running")
        assert ok(r) == "pulled and running\n"
    finally:
        ok(md(d, config, "pull", "busybox"))  # busybox comes back (built offline) for the other tests


def test_done_when_minidocker_cli(mdaemon, config_dir, tmp_path):
    need_tool("docker-registry")
    with DistributionRegistry(str(tmp_path / "reg")) as reg:
        scenario(mdaemon, config_dir, reg.host, md, "1")
        # an unknown tag and an unknown repository are clear errors
        r = md(mdaemon, config_dir, "pull", f"{reg.host}/bb:nope")
        assert r.returncode != 0 and b"manifest for" in r.stderr and b"not found" in r.stderr
        r = md(mdaemon, config_dir, "pull", f"{reg.host}/nothing:1")
        assert r.returncode != 0 and b"not found" in r.stderr


def test_done_when_docker_cli(mdaemon, config_dir, tmp_path):
    need_tool("docker-registry")
    with DistributionRegistry(str(tmp_path / "reg")) as reg:
        scenario(mdaemon, config_dir, reg.host, docker, "2")


def test_basic_auth_after_login(mdaemon, config_dir, tmp_path):
    need_tool("docker-registry")
    need_tool("htpasswd")
    with DistributionRegistry(str(tmp_path / "reg"), auth="htpasswd", users=USERS) as reg:
        r = md(mdaemon, config_dir, "push", f"{reg.host}/bb:1")
        assert r.returncode != 0  # not tagged yet / not logged in: either way refused
        ok(md(mdaemon, config_dir, "tag", "busybox", f"{reg.host}/bb:1"))
        r = md(mdaemon, config_dir, "push", f"{reg.host}/bb:1")
        assert r.returncode != 0 and b"minidocker login" in r.stderr + r.stdout
        r = md(mdaemon, config_dir, "login", "-u", "alice", "--password-stdin", reg.host, input=b"wrong\n")
        assert r.returncode != 0 and b"wrong username or password" in r.stderr
        assert not os.path.exists(os.path.join(config_dir, "config.json"))

        out = ok(md(mdaemon, config_dir, "login", "-u", "alice", "--password-stdin", reg.host, input=b"wonderland\n"))
        assert "Login Succeeded" in out
        cfg = json.load(open(os.path.join(config_dir, "config.json")))
        assert base64.b64decode(cfg["auths"][reg.host]["auth"]) == b"alice:wonderland"
        assert os.stat(os.path.join(config_dir, "config.json")).st_mode & 0o077 == 0
        ok(md(mdaemon, config_dir, "rmi", f"{reg.host}/bb:1"))
        scenario(mdaemon, config_dir, reg.host, md, "1")

        # `run` of an image that is not here pulls it, with the stored credentials
        ok(md(mdaemon, config_dir, "rmi", f"{reg.host}/bb:1"))
        r = md(mdaemon, config_dir, "run", "--rm", f"{reg.host}/bb:1", "echo", "auto-pulled")
        assert ok(r) == "auto-pulled\n" and b"Unable to find image" in r.stderr

        ok(md(mdaemon, config_dir, "logout", reg.host))
        assert reg.host not in json.load(open(os.path.join(config_dir, "config.json"))).get("auths", {})
        r = md(mdaemon, config_dir, "pull", f"{reg.host}/bb:1")
        assert r.returncode != 0 and b"minidocker login" in r.stderr + r.stdout


def test_token_auth_after_login_with_both_clients(mdaemon, config_dir, tmp_path):
    need_tool("docker-registry")
    need_tool("openssl")
    tokens = TokenServer(str(tmp_path / "tok"), USERS).start()
    try:
        with DistributionRegistry(str(tmp_path / "reg"), auth="token", token_server=tokens) as reg:
            ok(md(mdaemon, config_dir, "login", "-u", "alice", "--password-stdin", reg.host, input=b"wonderland\n"))
            scenario(mdaemon, config_dir, reg.host, md, "1")
            assert any(r["user"] == "alice" and r["scope"] == ["repository:bb:pull,push"] for r in tokens.requests)
            # the real docker CLI: its own login (POST /auth on minidockerd), then the same scenario
            other = str(tmp_path / "docker-cli-config")
            os.makedirs(other)
            out = ok(docker(mdaemon, other, "login", "-u", "alice", "--password-stdin", reg.host, input=b"wonderland\n"))
            assert "Login Succeeded" in out
            scenario(mdaemon, other, reg.host, docker, "2")
            r = docker(mdaemon, other, "login", "-u", "alice", "--password-stdin", reg.host, input=b"bad\n")
            assert r.returncode != 0 and b"unauthorized" in r.stderr.lower()
    finally:
        tokens.stop()


def test_skopeo_pushes_minidocker_pulls_and_runs(mdaemon, config_dir, tmp_path):
    skopeo = need_tool("skopeo")
    need_tool("docker-registry")
    with DistributionRegistry(str(tmp_path / "reg")) as reg:
        # the daemon's image store is an OCI image layout, so skopeo can read it as is
        layout = os.path.join(mdaemon.root, "images")
        r = subprocess.run([skopeo, "copy", "--dest-tls-verify=false", f"oci:{layout}:docker.io/library/busybox:latest",
                            f"docker://{reg.host}/from-skopeo:1"], capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        ok(md(mdaemon, config_dir, "pull", f"{reg.host}/from-skopeo:1"))
        out = ok(md(mdaemon, config_dir, "run", "--rm", f"{reg.host}/from-skopeo:1", "echo", "skopeo pushed me"))
        assert out == "skopeo pushed me\n"
        ok(md(mdaemon, config_dir, "rmi", f"{reg.host}/from-skopeo:1"))

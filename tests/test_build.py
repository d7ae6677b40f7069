"""The build chapter end to end: POST /build through the docker CLI (classic builder, with and
without DOCKER_BUILDKIT=0), docker-py and ``minidocker build``; the cache; failures leave nothing."""
import http.server
import io
import json
import os
import re
import subprocess
import tarfile
import threading

import pytest

from podman_conf import podman_env
from conftest import need_tool

pytestmark = pytest.mark.privileged

MULTI = """\
# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM $BASE AS build
WORKDIR /out
COPY hello.sh .
RUN chmod 0755 hello.sh && cp /bin/busybox /out/busybox
COPY data.txt .
FROM busybox AS unused
RUN exit 99
FROM scratch
COPY --from=build /out/busybox /busybox
COPY --from=build /out/hello.sh /hello.sh
COPY --from=build /out/data.txt /data.txt
ENTRYPOINT ["/busybox", "sh", "/hello.sh"]
"""


def write_context(path, files):
    for name, text in files.items():
        p = path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def docker_build(d, ctx, *args, buildkit=None):
    docker = need_tool("docker")
    env = d.env(**({"DOCKER_BUILDKIT": buildkit} if buildkit is not None else {}))
    env.pop("DOCKER_BUILDKIT", None) if buildkit is None else None
    return subprocess.run([docker, "build", *args, str(ctx)], env=env, capture_output=True, text=True,
                          timeout=300)


def steps(output: str) -> list[tuple[str, bool]]:
    """(instruction, from cache?) for every step after the first FROM, FROM lines left out."""
    out, cur, started = [], None, False
    for line in output.splitlines():
        m = re.match(r"Step \d+/\d+ : (.*)", line)
        if m:
            cur = m.group(1)
            started = started or cur.startswith("FROM")
            if started and not cur.startswith("FROM"):
                out.append([cur, False])
        elif "Using cache" in line and out and out[-1][0] == cur:
            out[-1][1] = True
    return [tuple(x) for x in out]


def snapshots(d) -> set:
    with open(os.path.join(d.root, "snapshots", "overlay", "metadata.json")) as f:
        return {k for k, v in json.load(f)["snapshots"].items() if v["kind"] != "committed"}


def run(d, image, *cmd):
    docker = need_tool("docker")
    r = subprocess.run([docker, "run", "--rm", image, *cmd], env=d.env(), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("buildkit", ["0", None])
def test_multi_stage_into_scratch_cache_and_invalidation(daemon, tmp_path, buildkit):
    d = daemon
    tag = f"built-{buildkit or 'default'}:1"
    write_context(tmp_path, {"Dockerfile": MULTI, "hello.sh": f'echo "hello {buildkit}"; /busybox cat /data.txt\n',
                             "data.txt": "one\n"})
    r = docker_build(d, tmp_path, "-t", tag, buildkit=buildkit)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Successfully tagged " + tag in r.stdout
    assert "exit 99" not in r.stdout                       # the unused stage is skipped
    assert run(d, tag) == f"hello {buildkit}\none\n"
    # Intermediate images (each step's) are listed only with -a, as docker's classic builder's.
    step_id = re.search(r"Step \d+/\d+ : COPY hello.sh .\n ---> (\w+)", r.stdout).group(1)
    docker = need_tool("docker")
    listed = subprocess.run([docker, "images", "-q"], env=d.env(), capture_output=True, text=True).stdout
    listed_all = subprocess.run([docker, "images", "-aq"], env=d.env(), capture_output=True, text=True).stdout
    assert step_id not in listed.split() and step_id in listed_all.split()
    # Second build: every step from the cache, same image.
    first_id = re.search(r"Successfully built (\w+)", r.stdout).group(1)
    r2 = docker_build(d, tmp_path, "-t", tag, buildkit=buildkit)
    assert r2.returncode == 0, r2.stderr
    assert all(cached for _, cached in steps(r2.stdout)), r2.stdout
    assert re.search(r"Successfully built (\w+)", r2.stdout).group(1) == first_id
    # One file changes: exactly the steps from its COPY on run again (in both stages).
    (tmp_path / "data.txt").write_text("two\n")
    r3 = docker_build(d, tmp_path, "-t", tag, buildkit=buildkit)
    assert r3.returncode == 0, r3.stderr
    got = steps(r3.stdout)
    first_miss = next(i for i, (_, cached) in enumerate(got) if not cached)
    assert got[first_miss][0] == "COPY data.txt ."
    assert [c for _, c in got] == [True] * first_miss + [False] + [True, True, False, False], got
    assert run(d, tag) == f"hello {buildkit}\ntwo\n"


def test_failed_step_leaves_no_container_or_snapshot(daemon, tmp_path):
    d = daemon
    write_context(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo partial > /f; exit 3\n"})
    before_containers = d.api("GET", "/containers/json?all=1")[1]
    before = snapshots(d)
    r = docker_build(d, tmp_path, buildkit="0")
    assert r.returncode == 3 and "returned a non-zero code: 3" in r.stderr, r.stderr
    assert d.api("GET", "/containers/json?all=1")[1] == before_containers
    assert snapshots(d) == before


def test_docker_py_and_minidocker_build(daemon, tmp_path):
    docker = pytest.importorskip("docker")
    d = daemon
    write_context(tmp_path, {"Dockerfile": MULTI, "hello.sh": 'echo py; /busybox cat /data.txt\n', "data.txt": "x\n"})
    client = docker.DockerClient(base_url=d.host)
    image, logs = client.images.build(path=str(tmp_path), tag="py-built:1")
    assert "py-built:1" in image.tags
    assert client.containers.run("py-built:1", remove=True) == b"py\nx\n"
    with pytest.raises(docker.errors.BuildError, match="returned a non-zero code: 5"):
        client.images.build(fileobj=io.BytesIO(b"FROM busybox\nRUN exit 5\n"))
    # minidocker build: -q prints the id; --target stops at a stage; all cached the second time.
    r = d.cli("build", "-q", "-t", "md-built:1", str(tmp_path), check=True)
    assert r.stdout.decode().strip() == image.id
    r = d.cli("build", "--target", "build", "-t", "md-stage:1", str(tmp_path), check=True)
    assert "Step 8/" not in r.stdout.decode()
    assert run(d, "md-stage:1", "cat", "/out/data.txt") == "x\n"
    # A Dockerfile on stdin (no context), and one outside the context (-f, sent under a new name).
    r = d.cli("build", "-q", "-", input=b'FROM busybox\nCMD ["echo", "from stdin"]\n', check=True)
    assert run(d, r.stdout.decode().strip()) == "from stdin\n"
    outside = tmp_path.parent / f"{tmp_path.name}-Dockerfile"
    outside.write_text("FROM busybox\nCOPY data.txt /\nCMD [\"cat\", \"/data.txt\"]\n")
    r = d.cli("build", "-q", "-f", str(outside), str(tmp_path), check=True)
    assert run(d, r.stdout.decode().strip()) == "x\n"


def test_config_semantics(daemon, tmp_path):
    """.dockerignore, build args, ONBUILD, USER/WORKDIR/ENV, LABEL, EXPOSE... as docker sets them."""
    d = daemon
    write_context(tmp_path, {
        "Dockerfile": ("FROM busybox AS base\nONBUILD RUN echo triggered > /onbuild\n"
                       "FROM base\nARG VERSION=1.0\nENV APP=/app HOME_DIR=${APP:-none}/home\n"
                       "WORKDIR $APP\nWORKDIR sub\nCOPY . .\nUSER 1000:1000\nLABEL v=$VERSION k=\"a b\"\n"
                       "EXPOSE 80 53/udp\nVOLUME /data\nSTOPSIGNAL SIGINT\nCMD echo hi\n"
                       "HEALTHCHECK --interval=5s CMD true\n"),
        ".dockerignore": "*.log\nsecret/\n!secret/public\n",
        "keep.txt": "k", "x.log": "l", "secret/key": "s", "secret/public": "p"})
    r = docker_build(d, tmp_path, "-t", "cfg:1", "--build-arg", "VERSION=2.5", buildkit="0")
    assert r.returncode == 0, r.stdout + r.stderr
    cfg = d.api("GET", "/images/cfg:1/json")[1]["Config"]
    assert cfg["WorkingDir"] == "/app/sub" and cfg["User"] == "1000:1000"
    assert "APP=/app" in cfg["Env"] and "HOME_DIR=none/home" in cfg["Env"]   # one ENV sees the values from before it
    assert cfg["Labels"] == {"v": "2.5", "k": "a b"}
    assert set(cfg["ExposedPorts"]) == {"80/tcp", "53/udp"} and set(cfg["Volumes"]) == {"/data"}
    assert cfg["StopSignal"] == "SIGINT" and cfg["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    assert cfg["Healthcheck"]["Test"] == ["CMD-SHELL", "true"] and cfg["Healthcheck"]["Interval"] == 5 * 10 ** 9
    assert not cfg.get("OnBuild")                            # triggers ran, not inherited
    listing = run(d, "cfg:1", "sh", "-c", "cat /onbuild; find . | sort; id -u")
    assert listing.split() == ["triggered", ".", "./.dockerignore", "./Dockerfile", "./keep.txt",
                               "./secret", "./secret/public", "1000"]


def test_add_archive_url_chown_chmod(daemon, tmp_path):
    d = daemon
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        ti = tarfile.TarInfo("inner/file")
        ti.size = 2
        t.addfile(ti, io.BytesIO(b"in"))
    (tmp_path / "a.tar.gz").write_bytes(buf.getvalue())

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "7")
            self.end_headers()
            self.wfile.write(b"fetched")

        def log_message(self, *a):
            pass
    srv = http.server.HTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        write_context(tmp_path, {
            "Dockerfile": (f"FROM busybox\nADD a.tar.gz /x/\nADD http://127.0.0.1:{srv.server_port}/dl.txt /u/\n"
                           "COPY --chown=nobody --chmod=0640 f* /c/\n"),
            "f1": "1", "f2": "2"})
        r = docker_build(d, tmp_path, "-t", "add:1", buildkit="0")
    finally:
        srv.shutdown()
        srv.server_close()
    assert r.returncode == 0, r.stdout + r.stderr
    out = run(d, "add:1", "sh", "-c", "cat /x/inner/file /u/dl.txt; echo; stat -c '%U:%G %a' /c/f1 /c/f2")
    assert out == "infetched\nnobody:nobody 640\nnobody:nobody 640\n"


def test_build_prune_and_refused_options(daemon, tmp_path):
    d = daemon
    status, body = d.api("POST", "/build?networkmode=host", body=b"", ctype="application/x-tar")
    assert status == 400 and "network mode" in body["message"]
    write_context(tmp_path, {"Dockerfile": "FROM busybox\nCOPY f /f\nENV X=1\n", "f": "x"})
    r = docker_build(d, tmp_path, "-t", "prunable:1", buildkit="0")
    assert r.returncode == 0, r.stderr
    status, body = d.api("POST", "/build/prune")
    assert status == 200 and body["CachesDeleted"] and body["SpaceReclaimed"] >= 0
    r = docker_build(d, tmp_path, "-t", "prunable:1", buildkit="0")
    assert r.returncode == 0 and "Using cache" not in r.stdout, r.stdout
    assert run(d, "prunable:1", "cat", "/f") == "x"


PODMAN_DOCKERFILE = """\
ARG FLAVOUR=plain
FROM busybox AS base
ONBUILD COPY keep.txt /onbuild/
ONBUILD ENV TRIGGERED=yes
FROM base AS final
ARG FLAVOUR
ARG VERSION=1.0
ENV APP=/app PATH_EXTRA=${APP:-none}/bin FLAVOUR=$FLAVOUR
WORKDIR $APP
WORKDIR sub
COPY . /ctx/
USER 1000:1000
LABEL version=$VERSION k="a b"
EXPOSE 80 53/udp
VOLUME /data
STOPSIGNAL SIGINT
ENTRYPOINT ["/bin/sh", "-c"]
CMD echo hi
FROM busybox AS other
LABEL never=built
"""


def _saved_image(tar_bytes: bytes) -> tuple[dict, set]:
    """(config, paths under ctx/ and onbuild/ in its layers) of a docker-archive."""
    outer = tarfile.open(fileobj=io.BytesIO(tar_bytes))
    manifest = json.load(outer.extractfile("manifest.json"))[0]
    config = json.load(outer.extractfile(manifest["Config"]))
    paths = set()
    for layer in manifest["Layers"]:
        with tarfile.open(fileobj=outer.extractfile(layer)) as t:
            paths |= {n.lstrip("./") for n in t.getnames() if n.lstrip("./").startswith(("ctx/", "onbuild/"))}
    return config, paths


def test_config_matches_podman_build(daemon, tmp_path):
    """The same Dockerfile and context through podman build (buildah; its own storage and config,
    no network): .dockerignore, build args, --target, ONBUILD, USER/WORKDIR/ENV compared field by field."""
    podman = need_tool("podman")
    d = daemon
    ctx_dir = tmp_path / "ctx"
    write_context(ctx_dir, {"Dockerfile": PODMAN_DOCKERFILE, ".dockerignore": "*.log\nsecret/\n!secret/public\n",
                            "keep.txt": "k", "x.log": "l", "secret/key": "s", "secret/public": "p",
                            "sub/deep/a.log": "l", "sub/deep/b.txt": "b"})
    env = podman_env(tmp_path / "podman", BUILDAH_FORMAT="docker")
    status, busybox_tar = d.api("GET", "/images/get?names=busybox:latest", timeout=120)
    assert status == 200
    (tmp_path / "busybox.tar").write_bytes(busybox_tar)
    subprocess.run([podman, "load", "-i", str(tmp_path / "busybox.tar")], check=True, env=env, capture_output=True)
    args = ["--target", "final", "--build-arg", "FLAVOUR=spicy", "--build-arg", "VERSION=2.5"]
    r = subprocess.run([podman, "build", "--network=none", "--format=docker", *args,
                        "-t", "localhost/cmp:1", str(ctx_dir)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    subprocess.run([podman, "save", "--format", "docker-archive", "-o", str(tmp_path / "podman.tar"),
                    "localhost/cmp:1"], check=True, env=env, capture_output=True)
    theirs, their_paths = _saved_image((tmp_path / "podman.tar").read_bytes())
    r = docker_build(d, ctx_dir, *args, "-t", "cmp:1", buildkit="0")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "never=built" not in r.stdout
    status, ours_tar = d.api("GET", "/images/get?names=cmp:1", timeout=120)
    ours, our_paths = _saved_image(ours_tar)
    assert our_paths == their_paths and "ctx/secret/public" in our_paths and "ctx/x.log" not in our_paths
    fields = ["Env", "WorkingDir", "User", "ExposedPorts", "Volumes", "StopSignal", "Entrypoint", "Cmd", "OnBuild"]
    mine = {f: ours["config"].get(f) or None for f in fields}
    podmans = {f: theirs["config"].get(f) or None for f in fields}
    assert mine == podmans, (mine, podmans)
    assert "TRIGGERED=yes" in mine["Env"] and "FLAVOUR=spicy" in mine["Env"] and mine["User"] == "1000:1000"
    labels = {k: v for k, v in (theirs["config"].get("Labels") or {}).items() if not k.startswith("io.buildah")}
    assert ours["config"]["Labels"] == labels


def test_from_pulls_missing_and_pull_flag(daemon, tmp_path):
    """FROM an image not here pulls it from its registry (a local one); --pull pulls even if present."""
    from registries import MinidockerRegistry
    d = daemon
    docker = need_tool("docker")
    reg = MinidockerRegistry(str(tmp_path / "reg")).start()
    try:
        ref = f"{reg.host}/base:1"
        for args in (["tag", "busybox:latest", ref], ["push", ref], ["rmi", ref]):
            r = subprocess.run([docker, *args], env=d.env(), capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr
        write_context(tmp_path / "ctx", {"Dockerfile": f"FROM {ref}\nCMD [\"echo\", \"pulled\"]\n"})
        r = docker_build(d, tmp_path / "ctx", "-t", "pulled:1", buildkit="0")
        assert r.returncode == 0 and f"Pulling {ref}" in r.stdout, r.stdout + r.stderr
        assert run(d, "pulled:1") == "pulled\n"
        r = docker_build(d, tmp_path / "ctx", "--pull", "-t", "pulled:1", buildkit="0")
        assert r.returncode == 0 and f"Pulling {ref}" in r.stdout, r.stdout + r.stderr
        r = docker_build(d, tmp_path / "ctx", "-t", "pulled:1", buildkit="0")
        assert "Pulling" not in r.stdout
    finally:
        reg.stop()
        subprocess.run([docker, "rmi", "pulled:1", f"{reg.host}/base:1"], env=d.env(), capture_output=True)

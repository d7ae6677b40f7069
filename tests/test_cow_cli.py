"""The copy-on-write chapter through the real CLIs: diff, commit, run the committed image — on a
daemon with the overlay driver and on one with the copy driver."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import leftovers, need_tool

pytestmark = pytest.mark.privileged


@pytest.fixture(params=["overlay", "copy"])
def any_daemon(request):
    d = request.getfixturevalue("daemon" if request.param == "overlay" else "copy_daemon")
    d.expected_driver = request.param
    return d


def _name(d, stem):
    return f"{stem}-{d.expected_driver}"


def test_info_names_the_driver(any_daemon):
    status, info = any_daemon.api("GET", "/info")
    assert status == 200 and info["Driver"] == any_daemon.expected_driver
    r = any_daemon.cli("info", check=True)
    assert f"Storage Driver: {any_daemon.expected_driver}" in r.stdout.decode()
    r = any_daemon.cli("doctor", check=True)
    assert f"storage driver {any_daemon.expected_driver}" in r.stdout.decode()
    r = any_daemon.cli("doctor", "--json", check=True)
    assert json.loads(r.stdout)["daemon"]["driver"] == any_daemon.expected_driver


def test_done_when_scenario(any_daemon):
    d = any_daemon
    c1, img = _name(d, "c1"), f"mine-{d.expected_driver}:1"
    try:
        r = d.cli("run", "--name", c1, "busybox", "sh", "-c", "rm /bin/ls; echo hi > /new", check=True)
        diff = d.cli("diff", c1, check=True).stdout.decode().splitlines()
        assert "D /bin/ls" in diff and "A /new" in diff, diff
        assert "C /bin" in diff, diff                     # docker shows the changed parent too
        image_id = d.cli("commit", c1, img, check=True).stdout.decode().strip()
        assert image_id.startswith("sha256:")
        r = d.cli("run", "--rm", img, "cat", "/new", check=True)
        assert r.stdout == b"hi\n"
        r = d.cli("run", "--rm", img, "sh", "-c", "test -e /bin/ls && echo present || echo gone", check=True)
        assert r.stdout == b"gone\n"
        # The image records the new layer and a history entry; its config is the container's.
        status, inspect = d.api("GET", f"/images/{img}/json")
        assert status == 200 and inspect["Id"] == image_id
        status, base = d.api("GET", "/images/busybox/json")
        assert inspect["RootFS"]["Layers"][:-1] == base["RootFS"]["Layers"]
        assert len(inspect["RootFS"]["Layers"]) == len(base["RootFS"]["Layers"]) + 1
        assert inspect["Config"]["Cmd"] == ["sh", "-c", "rm /bin/ls; echo hi > /new"]
    finally:
        d.cli("rm", "-f", c1)
    # No mount of the container anywhere after rm, and its writable layer is gone.
    assert not [x for x in leftovers(d.root) if "mount" in x]
    status, _ = d.api("GET", f"/containers/{c1}/changes")
    assert status == 404


def test_commit_changes_and_deterministic_layer(any_daemon):
    d = any_daemon
    c2 = _name(d, "c2")
    try:
        d.cli("run", "--name", c2, "busybox", "sh", "-c",
              "mkdir -p /srv/app && echo v1 > /srv/app/f && chmod 4755 /srv/app/f && ln -s f /srv/app/l",
              check=True)
        ids = []
        for tag in ("a", "b"):
            out = d.cli("commit", "-c", 'CMD ["cat", "/srv/app/f"]', "-c", "ENV GREETING=hello",
                        "-c", "WORKDIR /srv/app", "-c", "ENTRYPOINT []", "-m", "first", "-a", "me",
                        c2, f"cw-{d.expected_driver}:{tag}", check=True)
            ids.append(out.stdout.decode().strip())
        status, a = d.api("GET", f"/images/cw-{d.expected_driver}:a/json")
        status, b = d.api("GET", f"/images/cw-{d.expected_driver}:b/json")
        # The same changes give the same layer bytes: the DiffIDs match (configs differ by time).
        assert a["RootFS"]["Layers"][-1] == b["RootFS"]["Layers"][-1]
        assert a["Config"]["Cmd"] == ["cat", "/srv/app/f"] and a["Config"]["WorkingDir"] == "/srv/app"
        assert "GREETING=hello" in a["Config"]["Env"] and a["Author"] == "me"
        r = d.cli("run", "--rm", f"cw-{d.expected_driver}:a", check=True)
        assert r.stdout == b"v1\n"
        r = d.cli("run", "--rm", f"cw-{d.expected_driver}:a", "sh", "-c",
                  "stat -c '%a' f; readlink l; pwd; echo $GREETING", check=True)
        assert r.stdout.decode().split("\n")[:4] == ["4755", "f", "/srv/app", "hello"]
        bad = d.cli("commit", "-c", "FROBNICATE x", c2, f"cw-{d.expected_driver}:bad")
        assert bad.returncode != 0 and b"not a valid change command" in bad.stderr
        bad = d.cli("commit", c2, "Bad Name:x")
        assert bad.returncode != 0 and b"invalid reference format" in bad.stderr.lower()
        dangling = d.cli("commit", c2, check=True).stdout.decode().strip()   # no name: <none>:<none>
        status, img = d.api("GET", f"/images/{dangling}/json")
        assert status == 200 and img["RepoTags"] == []
    finally:
        d.cli("rm", "-f", c2)


def test_two_containers_do_not_see_each_other(any_daemon):
    d = any_daemon
    a, b = _name(d, "iso-a"), _name(d, "iso-b")
    try:
        d.cli("create", "--name", b, "busybox", "cat", "/etc/mine", check=True)
        d.cli("run", "--name", a, "busybox", "sh", "-c", "echo a > /etc/mine; rm /bin/sh", check=True)
        r = d.cli("start", "-a", b)
        assert r.returncode != 0 and b"No such file" in r.stderr
        assert d.cli("diff", b, check=True).stdout == b""
    finally:
        d.cli("rm", "-f", a, b)


def test_docker_cli_diff_and_commit(any_daemon):
    docker = need_tool("docker")
    d = any_daemon
    c = _name(d, "dk")
    env = d.env()
    try:
        d.cli("run", "--name", c, "busybox", "sh", "-c", "rm /bin/ls; echo hi > /new", check=True)
        r = subprocess.run([docker, "diff", c], env=env, capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.decode().splitlines()
        assert "D /bin/ls" in lines and "A /new" in lines
        r = subprocess.run([docker, "commit", "-c", "CMD cat /new", c, f"dk-{d.expected_driver}:1"],
                           env=env, capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        r = subprocess.run([docker, "run", "--rm", f"dk-{d.expected_driver}:1"], env=env,
                           capture_output=True, timeout=60)
        assert r.stdout == b"hi\n", r.stderr
    finally:
        d.cli("rm", "-f", c)


def test_docker_py_commit(any_daemon):
    docker = pytest.importorskip("docker")
    d = any_daemon
    client = docker.DockerClient(base_url=d.host, version="1.45")
    c = client.containers.run("busybox", ["sh", "-c", "echo py > /py"], name=_name(d, "py"), detach=True)
    try:
        c.wait()
        assert {"Path": "/py", "Kind": 1} in c.diff()
        img = c.commit(repository=f"py-{d.expected_driver}", tag="1", changes=["CMD cat /py"], message="m")
        out = client.containers.run(img.id, remove=True)
        assert out == b"py\n"
    finally:
        c.remove(force=True)
        client.close()


def test_an_image_of_more_layers_than_one_page_of_mount_options(daemon, tmp_path):
    """100 layers: absolute lowerdirs would need ~5,000 bytes of options; the container's pid 1
    mounts with relative ones after a chdir."""
    import io
    import tarfile
    from minidocker.images.store import MEDIA_TYPE_LAYER, ImageStore
    store = ImageStore(os.path.join(daemon.root, "images"))   # the daemon's store, on disk
    base = store.resolve("busybox")
    layers = []
    for n in range(100):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            ti = tarfile.TarInfo(f"layer{n}")
            data = f"{n}\n".encode()
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
        digest = store.content.put(buf.getvalue())
        layers.append({"mediaType": MEDIA_TYPE_LAYER, "digest": digest, "size": len(buf.getvalue())})
    config = dict(base.config, rootfs={"type": "layers", "diff_ids": base.diff_ids + [x["digest"] for x in layers]})
    config_bytes = json.dumps(config).encode()
    manifest = dict(base.manifest, layers=base.manifest["layers"] + layers,
                    config=dict(base.manifest["config"], digest=store.content.put(config_bytes), size=len(config_bytes)))
    image = store.add_image(json.dumps(manifest).encode(), "deep:1")
    assert len(image.diff_ids) == 101
    r = daemon.cli("run", "--rm", "deep:1", "sh", "-c", "cat /layer0 /layer99; ls / | grep -c layer", check=True)
    assert r.stdout == b"0\n99\n100\n"
    cid = daemon.cli("create", "deep:1", "true", check=True).stdout.decode().strip()
    try:
        status, info = daemon.api("GET", f"/containers/{cid}/json")
        assert len(info["GraphDriver"]["Data"]["LowerDir"].split(":")) == 102  # + the init layer
        assert all(p.startswith(daemon.root) for p in info["GraphDriver"]["Data"]["LowerDir"].split(":"))
    finally:
        daemon.cli("rm", cid)


def test_daemon_on_overlayfs_falls_back_to_copy_and_runs(tmp_path):
    """Inside a container the state directory is often on overlayfs, which cannot be an overlay
    upper (the kernel says EINVAL). Make that situation for real: the daemon runs in a mount
    namespace of its own where its root is on an overlay mount."""
    import shutil
    import sys
    import tempfile
    import time
    from conftest import REPO, Daemon, need, need_root
    need_root()
    unshare = need_tool("unshare")
    need(os.path.exists("/bin/busybox"), "/bin/busybox (busybox-static)")
    base = tempfile.mkdtemp(prefix="mdtest-ovl-", dir="/tmp")
    for sub in ("l", "u", "w", "m"):
        os.mkdir(os.path.join(base, sub))
    d = Daemon(base)
    script = (f"mount -t overlay overlay -o lowerdir={base}/l,upperdir={base}/u,workdir={base}/w {base}/m && "
              f"exec {sys.executable} -m minidocker.daemon.main --root {base}/m/root -H {d.host} --debug "
              f"--cgroup-parent {d.cgroup_parent} {' '.join(d.net_flags)}")
    d.proc = subprocess.Popen([unshare, "--mount", "--propagation", "private", "sh", "-c", script],
                              stdout=d.log, stderr=d.log, cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while not d.ping():
            assert d.proc.poll() is None and time.monotonic() < deadline, d.logtext()[-2000:]
            time.sleep(0.05)
        status, info = d.api("GET", "/info")
        assert info["Driver"] == "copy"
        assert any("overlay storage driver cannot work here" in w for w in info["Warnings"])
        assert "falling back" in d.logtext() or "using copy" in d.logtext()
        r = d.cli("run", "--name", "fb", "busybox", "sh", "-c", "rm /bin/ls; echo hi > /new", check=True)
        assert "D /bin/ls" in d.cli("diff", "fb", check=True).stdout.decode().splitlines()
        d.cli("commit", "fb", "fb:1", check=True)
        assert d.cli("run", "--rm", "fb:1", "cat", "/new", check=True).stdout == b"hi\n"
    finally:
        if d.proc.poll() is None:
            d.remove_all()
        d.stop()
        left = leftovers(base)
        shutil.rmtree(base, ignore_errors=True)
        assert not left, left

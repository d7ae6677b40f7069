"""The image verbs end to end: minidocker's CLI and the real docker CLI against a minidockerd of
this module's own (rmi and prune would disturb the session daemon's busybox), and podman's
docker-archive loading and running."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile

import pytest

from podman_conf import podman_env
from conftest import Daemon, leftovers, need, need_root, need_tool
from test_image_archives import no_host_traces  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def d():
    need_root()
    need(os.path.exists("/bin/busybox"), "/bin/busybox (busybox-static)")
    base = tempfile.mkdtemp(prefix="mdimg-", dir="/tmp")
    daemon = Daemon(base).start()
    try:
        yield daemon
    finally:
        try:
            daemon.remove_all()
        finally:
            daemon.stop()
            assert leftovers(base) == []
            shutil.rmtree(base, ignore_errors=True)


def ok(d, *args, **kw):
    r = d.cli(*args, **kw)
    assert r.returncode == 0, f"minidocker {' '.join(args)}: {r.stderr.decode()}"
    return r.stdout.decode()


def fail(d, *args):
    r = d.cli(*args)
    assert r.returncode != 0, f"minidocker {' '.join(args)} should fail"
    return r.stderr.decode()


def ensure_busybox(d):
    if d.cli("image", "inspect", "busybox").returncode != 0:
        ok(d, "run", "--rm", "busybox", "true")  # "pulls" (builds offline)


def test_save_rmi_load_run(d, tmp_path):
    """The issue's 'done when': save, rmi, load, run."""
    ensure_busybox(d)
    iid = json.loads(ok(d, "image", "inspect", "busybox"))[0]["Id"]
    out = str(tmp_path / "b.tar")
    ok(d, "save", "busybox", "-o", out)
    assert "Untagged: busybox:latest" in ok(d, "rmi", "busybox")
    assert d.cli("image", "inspect", "busybox").returncode != 0
    assert ok(d, "load", "-i", out) == "Loaded image: busybox:latest\n"
    assert json.loads(ok(d, "image", "inspect", "busybox"))[0]["Id"] == iid
    assert d.cli("run", "--rm", "busybox", "true").returncode == 0
    # stdin works too, and an OCI archive loads the same
    oci = str(tmp_path / "b.oci.tar")
    ok(d, "save", "--format", "oci-archive", "-o", oci, "busybox")
    with tarfile.open(oci) as tar:
        assert "manifest.json" not in tar.getnames() and "index.json" in tar.getnames()
    with open(oci, "rb") as f:
        assert ok(d, "load", input=f.read()) == "Loaded image: busybox:latest\n"


def test_tag_untag_and_delete_report_like_docker(d):
    ensure_busybox(d)
    ok(d, "tag", "busybox", "localhost:5000/team/bb:v1")
    ok(d, "tag", "busybox", "bb2")
    listing = ok(d, "images")
    assert "localhost:5000/team/bb   v1" in listing and "bb2 " in listing
    iid = json.loads(ok(d, "image", "inspect", "bb2"))[0]["Id"]
    err = fail(d, "rmi", iid[7:19])
    assert "referenced in multiple repositories" in err and "must be forced" in err
    assert ok(d, "rmi", "bb2") == "Untagged: bb2:latest\n"  # other names remain: untag only
    assert ok(d, "rmi", "localhost:5000/team/bb:v1") == "Untagged: localhost:5000/team/bb:v1\n"
    assert "invalid reference format" in fail(d, "tag", "busybox", "team/UPPER")
    assert "No such image: nothere:latest" in fail(d, "rmi", "nothere")


def test_rmi_refused_while_a_container_uses_the_image(d, tmp_path):
    ensure_busybox(d)
    ok(d, "tag", "busybox", "inuse:1")
    ok(d, "rmi", "busybox")  # inuse:1 is now the only name
    cid = ok(d, "create", "inuse:1", "true").strip()
    try:
        err = fail(d, "rmi", "inuse:1")
        assert "conflict" in err and "must force" in err and cid[:12] in err
        forced = ok(d, "rmi", "-f", "inuse:1")
        assert forced == "Untagged: inuse:1\n"  # untagged, but kept for the container
        dangling = ok(d, "images", "-q", "--filter", "dangling=true")
        iid = json.loads(ok(d, "inspect", cid))[0]["Image"]
        assert iid[7:19] in dangling
        ok(d, "rm", cid)
        pruned = ok(d, "image", "prune", "-f")
        assert f"deleted: {iid}" in pruned and "Total reclaimed space" in pruned
    finally:
        d.cli("rm", "-f", cid)
        ensure_busybox(d)


def test_import_history_and_filters(d, tmp_path):
    root = tmp_path / "rootfs" / "bin"
    root.mkdir(parents=True)
    shutil.copy("/bin/busybox", root / "busybox")
    os.symlink("busybox", root / "sh")
    iid = ok(d, "import", "-c", 'CMD ["/bin/sh", "-c", "echo imported"]', "-c", "LABEL tier=gold",
             "-m", "from a directory", str(tmp_path / "rootfs"), "imp:dir").strip()
    assert iid.startswith("sha256:")
    assert ok(d, "run", "--rm", "imp:dir") == "imported\n"
    tgz = tmp_path / "r.tgz"
    subprocess.run(["tar", "-C", str(tmp_path / "rootfs"), "-czf", str(tgz), "."], check=True)
    with open(tgz, "rb") as f:
        iid2 = ok(d, "import", "-", "imp:tgz", input=f.read()).strip()
    history = ok(d, "history", "imp:dir")
    assert "Imported from -" in history and "from a directory" in history
    assert ok(d, "images", "-q", "--filter", "label=tier=gold") == iid[7:19] + "\n"
    refs = ok(d, "images", "--no-trunc", "--filter", "reference=imp:*", "--format", "{{.ID}}").split()
    assert sorted(refs) == sorted([iid, iid2])
    before = ok(d, "images", "-q", "--filter", "before=imp:dir")  # busybox is months older
    busybox_id = json.loads(ok(d, "image", "inspect", "busybox"))[0]["Id"]
    assert before.split() == [busybox_id[7:19]]
    since = ok(d, "images", "-q", "--filter", "since=busybox")
    assert iid[7:19] in since and iid2[7:19] in since
    assert "invalid filter 'color'" in fail(d, "images", "--filter", "color=red")
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        ti = tarfile.TarInfo("../../etc/evil")
        tar.addfile(ti)
    err = fail(d, "import", str(evil), "evil:1")
    assert "escapes the target directory" in err
    assert d.cli("image", "inspect", "evil:1").returncode != 0
    ok(d, "rmi", "imp:dir", "imp:tgz")


def test_load_refuses_garbage_with_a_clear_error(d, tmp_path):
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"definitely not a tar" * 100)
    assert "failed to load the archive: not a tar archive" in fail(d, "load", "-i", str(junk))


def test_docker_cli_speaks_the_image_endpoints(d, tmp_path):
    docker = need_tool("docker")
    ensure_busybox(d)
    env = d.env()

    def dk(*args, check=True):
        r = subprocess.run([docker, *args], capture_output=True, text=True, env=env, timeout=60)
        assert not check or r.returncode == 0, f"docker {' '.join(args)}: {r.stderr}"
        return r
    dk("tag", "busybox", "dk/test:1")
    assert "dk/test" in dk("images", "--filter", "reference=dk/*").stdout
    assert "minidocker build-busybox" in dk("history", "--no-trunc", "busybox").stdout
    out = tmp_path / "docker-saved.tar"
    dk("save", "-o", str(out), "dk/test:1")
    with tarfile.open(out) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    assert manifest[0]["RepoTags"] == ["dk/test:1"]
    assert "Untagged: dk/test:1" in dk("rmi", "dk/test:1").stdout
    assert "Loaded image: dk/test:1" in dk("load", "-i", str(out)).stdout
    assert "dk/test:1" in dk("image", "inspect", "--format", "{{.RepoTags}}", "dk/test:1").stdout
    dk("rmi", "dk/test:1")


def test_layouts_from_skopeo_and_umoci_run(d, tmp_path, no_host_traces):
    skopeo = need_tool("skopeo")
    umoci = need_tool("umoci")
    ensure_busybox(d)
    layout = tmp_path / "layout"
    ok(d, "save", "--format", "oci", "-o", str(layout), "busybox")
    copied = tmp_path / "copied"
    subprocess.run([skopeo, "copy", "-q", f"oci:{layout}:latest", f"oci:{copied}:latest"], check=True)
    loaded = ok(d, "load", "-i", str(copied))
    assert loaded.startswith("Loaded image ID: sha256:")  # skopeo keeps only the tag: no name
    iid = loaded.split()[-1]
    assert ok(d, "run", "--rm", iid, "echo", "skopeo") == "skopeo\n"
    bundle = tmp_path / "bundle"
    subprocess.run([umoci, "unpack", "--image", f"{layout}:latest", str(bundle)], check=True,
                   capture_output=True)
    (bundle / "rootfs" / "hello.txt").write_text("hello from umoci\n")
    subprocess.run([umoci, "repack", "--image", f"{layout}:umoci", str(bundle)], check=True,
                   capture_output=True)
    assert "Loaded image: busybox:umoci" in ok(d, "load", "-i", str(layout))
    assert ok(d, "run", "--rm", "busybox:umoci", "cat", "/hello.txt") == "hello from umoci\n"
    ok(d, "rmi", "busybox:umoci")


def test_podman_saved_image_loads_and_runs(d, tmp_path, no_host_traces):
    """podman with its own vfs storage and configuration in tmp_path; it never runs a container
    (so no network, no cgroups): import a rootfs, save as docker-archive."""
    podman = need_tool("podman")
    env = podman_env(tmp_path / "podman")
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", rootfs / "bin" / "busybox")
    os.symlink("busybox", rootfs / "bin" / "sh")
    tarball = tmp_path / "rootfs.tar"
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], check=True)
    saved = tmp_path / "podman.tar"
    subprocess.run([podman, "import", "--change", 'CMD ["/bin/sh", "-c", "echo from podman"]',
                    str(tarball), "localhost/podimg:1"], check=True, env=env, capture_output=True)
    subprocess.run([podman, "save", "--format", "docker-archive", "-o", str(saved),
                    "localhost/podimg:1"], check=True, env=env, capture_output=True)
    with tarfile.open(saved) as tar:
        assert "manifest.json" in tar.getnames() and "repositories" in tar.getnames()
    assert ok(d, "load", "-i", str(saved)) == "Loaded image: localhost/podimg:1\n"
    assert ok(d, "run", "--rm", "localhost/podimg:1") == "from podman\n"
    ok(d, "rmi", "localhost/podimg:1")


def test_docker_py_image_api(d):
    docker = pytest.importorskip("docker")
    ensure_busybox(d)
    client = docker.DockerClient(base_url=d.host)
    try:
        img = client.images.get("busybox")
        data = b"".join(img.save())
        img.tag("dpy/test", "x")
        assert "dpy/test:x" in client.images.get("dpy/test:x").tags
        client.images.remove("dpy/test:x")
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get("dpy/test:x")
        assert [i.id for i in client.images.load(data)] == [img.id]
        assert img.history()[0]["Id"] == img.id
        assert [i.id for i in client.images.list(filters={"reference": "busy*"})] == [img.id]
        assert set(client.images.prune(filters={"dangling": True})) == {"ImagesDeleted", "SpaceReclaimed"}
    finally:
        client.close()

"""Storage hygiene: each layer is extracted once, when the image arrives (pull, load, commit), into
the snapshotter; ``run`` only prepares a writable layer; ``rmi`` of the last image using a layer
removes its blob and its snapshot, so pull/load/commit + run + rm + rmi leaves the content store and
the snapshots exactly as they were. Roots of older daemons (a second copy of every layer in
``images/snapshots``) are migrated at daemon start. Leases keep a concurrent prune off the
snapshots a create is assembling (the "snapshot '<id>-init' does not exist" race).

Each daemon test runs on both storage drivers (overlay and copy)."""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import tempfile
import threading
import time
import urllib.parse

import pytest

from conftest import Daemon, need, need_root, need_tool
from registries import DistributionRegistry, build_image
from minidocker import unionfs
from minidocker.images import ImageStore, apply_layer, build_busybox
from minidocker.images.archive import save
from minidocker.registry.client import Registry

pytestmark = pytest.mark.privileged


@contextlib.contextmanager
def own_daemon(driver: str):
    """A minidockerd of the test's own (not started: a test may lay out its root first)."""
    need_root()
    need(os.path.exists("/bin/busybox"), "/bin/busybox (busybox-static)")
    d = Daemon(tempfile.mkdtemp(prefix="mdstore-", dir="/tmp"), driver)
    try:
        yield d
    finally:
        left = d.shutdown()
        assert not left, left


@pytest.fixture(scope="module", params=["overlay", "copy"])
def sdaemon(request):
    """One per driver for this module (the tests compare its whole store)."""
    with own_daemon(request.param) as d:
        yield d.start()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """busybox plus one layer with a marker file, in a store of the test's own."""
    need(os.path.exists("/bin/busybox"), "/bin/busybox (busybox-static)")
    store = ImageStore(str(tmp_path_factory.mktemp("source")))
    base = build_busybox(store)
    image = build_image(store, [{"marker-7f3a": b"pulled once\n"}], ref="storage/app:1", base=base)
    return store, image


@pytest.fixture(scope="module")
def app_archive(source, tmp_path_factory):
    """storage/app:1 as a docker-archive (what `docker save` writes)."""
    store, _ = source
    path = tmp_path_factory.mktemp("archive") / "app.tar"
    with open(path, "wb") as f:
        save(store, ["storage/app:1"], f)
    return str(path)


def store_files(d: Daemon) -> set[str]:
    """Every path under the content store and the snapshot roots."""
    out = set()
    for top in (os.path.join(d.root, "images", "blobs"), os.path.join(d.root, "snapshots")):
        for dirpath, dirnames, filenames in os.walk(top):
            out.update(os.path.relpath(os.path.join(dirpath, n), d.root) for n in dirnames + filenames)
    return out


def committed(d: Daemon) -> dict:
    meta = json.load(open(os.path.join(d.root, "snapshots", d.driver, "metadata.json")))
    return {k: v for k, v in meta["snapshots"].items() if v["kind"] == "committed"}


def copies_of(d: Daemon, name: str) -> int:
    return sum(name in filenames for _, _, filenames in os.walk(d.root))


def ok(r) -> str:
    assert r.returncode == 0, (r.args, r.stdout.decode(), r.stderr.decode())
    return r.stdout.decode()


def inspect(d: Daemon, ref: str) -> dict:
    status, body = d.api("GET", f"/images/{urllib.parse.quote(ref, safe='')}/json")
    assert status == 200, body
    return body


def chain_ids_of(d: Daemon, ref: str) -> list[str]:
    from minidocker.images.store import chain_ids
    return chain_ids(inspect(d, ref)["RootFS"]["Layers"])


def assert_extracted_once(d: Daemon, ref: str) -> dict:
    """Right after the image arrived: every layer is a committed snapshot, no other copy exists."""
    snaps = committed(d)
    chains = chain_ids_of(d, ref)
    assert set(chains) <= set(snaps), "the image's layers were not extracted when it arrived"
    assert not os.path.exists(os.path.join(d.root, "images", "snapshots"))
    return {c: snaps[c]["id"] for c in chains}


def run_and_remove(d: Daemon, ref: str, argv: list[str], expected: str, extracted: dict) -> None:
    assert ok(d.cli("run", "--rm", ref, *argv)) == expected
    after = committed(d)
    assert {c: after[c]["id"] for c in extracted} == extracted, "run extracted a layer again"
    r = d.cli("rmi", ref)
    ok(r)
    assert d.api("GET", f"/images/{urllib.parse.quote(ref, safe='')}/json")[0] == 404


def test_pull_run_rmi_leaves_the_store_as_it_was(sdaemon, source, tmp_path):
    store, image = source
    with DistributionRegistry(str(tmp_path / "reg")) as reg:
        Registry(reg.host).push("storage/app", "1", store, image)
        ref = f"{reg.host}/storage/app:1"
        before = store_files(sdaemon)
        ok(sdaemon.cli("pull", ref))
        extracted = assert_extracted_once(sdaemon, ref)
        assert copies_of(sdaemon, "marker-7f3a") == 1   # the blob is gzip: one extracted copy only
        run_and_remove(sdaemon, ref, ["cat", "/marker-7f3a"], "pulled once\n", extracted)
    assert store_files(sdaemon) == before


def test_load_run_rmi_leaves_the_store_as_it_was(sdaemon, app_archive):
    before = store_files(sdaemon)
    ok(sdaemon.cli("load", "-i", app_archive))
    extracted = assert_extracted_once(sdaemon, "storage/app:1")
    run_and_remove(sdaemon, "storage/app:1", ["cat", "/marker-7f3a"], "pulled once\n", extracted)
    assert store_files(sdaemon) == before


def test_load_of_a_hostile_layer_is_refused_and_leaves_nothing(sdaemon, tmp_path):
    """Layers are extracted when loaded: a layer the safe applier refuses fails the load (400 with
    the reason), and neither the image, its blobs nor a snapshot stay."""
    from test_images import add_synthetic, make_tar
    store = ImageStore(str(tmp_path / "bad"))
    add_synthetic(store, [make_tar(("sym", "a", "b"), ("sym", "b", "a"), ("file", "a/x", "x"))], "storage/bad:1")
    archive = tmp_path / "bad.tar"
    with open(archive, "wb") as f:
        save(store, ["storage/bad:1"], f)
    before = store_files(sdaemon)
    r = sdaemon.cli("load", "-i", str(archive))
    assert r.returncode != 0 and b"too many levels of symbolic links" in r.stderr.lower()
    assert sdaemon.api("GET", "/images/storage/bad:1/json")[0] == 404
    status, body = sdaemon.api("POST", "/images/prune")    # its blobs were stored, nothing names them
    assert status == 200, body
    assert store_files(sdaemon) == before


def test_commit_run_rmi_leaves_the_store_as_it_was(sdaemon):
    before = store_files(sdaemon)
    name = f"storage-commit-{os.getpid()}"
    ok(sdaemon.cli("run", "--name", name, "busybox", "sh", "-c", "echo committed > /committed-9b1e"))
    status, body = sdaemon.api("POST", f"/commit?container={name}&repo=storage/committed&tag=1")
    assert status == 201, body
    extracted = assert_extracted_once(sdaemon, "storage/committed:1")  # at commit time
    ok(sdaemon.cli("rm", name))
    run_and_remove(sdaemon, "storage/committed:1", ["cat", "/committed-9b1e"], "committed\n", extracted)
    assert store_files(sdaemon) == before


def test_image_prune_frees_unreferenced_blobs_and_layers(sdaemon, app_archive):
    before = store_files(sdaemon)
    ok(sdaemon.cli("load", "-i", app_archive))
    ok(sdaemon.cli("tag", "storage/app:1", "storage/app:other"))
    ok(sdaemon.cli("rmi", "storage/app:1", "storage/app:other"))   # untag, then delete
    assert store_files(sdaemon) == before
    # Garbage an older daemon left: an unreferenced blob (old enough not to be an ingest).
    orphan = os.path.join(sdaemon.root, "images", "blobs", "sha256", "ab" * 32)
    with open(orphan, "wb") as f:
        f.write(b"orphan")
    status, body = sdaemon.api("POST", "/images/prune")
    assert status == 200, body
    assert not os.path.exists(orphan) and body["SpaceReclaimed"] >= len(b"orphan")
    assert store_files(sdaemon) == before


@pytest.mark.parametrize("driver", ["overlay", "copy"])
def test_docker_system_prune_frees_every_blob_and_layer(driver, app_archive):
    """The real docker CLI: `system prune -af` (containers, networks, images, build cache) leaves an
    empty content store and no snapshot at all."""
    docker = need_tool("docker")
    with own_daemon(driver) as d:
        d.start()
        ok(d.cli("load", "-i", app_archive))
        ok(d.cli("run", "--name", "left-exited", "storage/app:1", "true"))   # stopped, not removed
        r = subprocess.run([docker, "system", "prune", "-af"], capture_output=True, env=d.env(), timeout=120)
        assert ok(r).splitlines()[0] == "Deleted Containers:"
        assert os.listdir(os.path.join(d.root, "images", "blobs", "sha256")) == []
        assert json.load(open(os.path.join(d.root, "snapshots", driver, "metadata.json")))["snapshots"] == {}
        assert sorted(os.listdir(os.path.join(d.root, "snapshots", driver))) == [".lock", "metadata.json"]


# ---- pull: download and extraction in one pass ---------------------------------------------------------

@pytest.mark.parametrize("driver", ["overlay", "copy"])
@pytest.mark.parametrize("fault", [None, "flip", "short", "bad-diff-id"])
def test_stream_layer_commits_only_verified_content(tmp_path, driver, fault):
    """The blob goes to the content store and into the extractor at once; the snapshot is committed
    only if the digest (and the DiffID) match. A flipped byte or a short stream leaves neither a
    blob nor a snapshot."""
    import io
    from registries import layer_tar
    from minidocker.images.layers import LayerError
    from minidocker.images.store import DigestMismatch, sha256_digest
    from minidocker.images.unpack import stream_layer
    blob, diff_id = layer_tar({"etc/streamed": b"x" * 200_000, "bin/tool": b"#!/bin/sh\n"})
    desc = {"digest": sha256_digest(blob), "size": len(blob)}
    sent = bytearray(blob)
    if fault == "flip":
        sent[len(sent) // 2] ^= 0xFF
    elif fault == "short":
        del sent[len(sent) // 2:]
    store = ImageStore(str(tmp_path / "store"))
    snap = unionfs.new_snapshotter(driver, str(tmp_path / "snaps"))
    want = "sha256:" + "0" * 64 if fault == "bad-diff-id" else diff_id
    if fault is None:
        assert stream_layer(store, snap, io.BytesIO(bytes(sent)), desc, want, want, None) is True
        assert open(os.path.join(snap.fs(want), "etc", "streamed"), "rb").read() == b"x" * 200_000
        assert snap.stat(want).labels == {"diff_id": want, "layer_digest": desc["digest"]}
        assert store.content.verify(desc["digest"])
        return
    with pytest.raises(LayerError if fault == "bad-diff-id" else DigestMismatch):
        stream_layer(store, snap, io.BytesIO(bytes(sent)), desc, want, want, None)
    assert snap.list() == []
    assert store.content.has(desc["digest"]) == (fault == "bad-diff-id")  # the blob itself was fine
    assert [n for n in os.listdir(store.content.blob_dir) if n.startswith(".tmp")] == []


# ---- migration of an old root ------------------------------------------------------------------------

def old_layout_root(root: str) -> tuple[ImageStore, object, dict]:
    """A root as older daemons left it: images in the store and a second copy of every layer in
    images/snapshots/<chainid hex>/fs (overlay whiteouts) with a meta.json."""
    from registries import layer_tar
    store = ImageStore(os.path.join(root, "images"))
    base = build_busybox(store)
    image = build_image(store, [{"old-layout-marker": b"migrated\n"}], ref="storage/old:1", base=base)
    inodes = {}
    parent = None
    for layer, diff_id, chain_id in zip(image.manifest["layers"], image.diff_ids, image.chain_ids):
        fs = os.path.join(store.root, "snapshots", chain_id[7:], "fs")
        os.makedirs(fs)
        with store.content.open(layer["digest"]) as f:
            apply_layer(f, fs, whiteouts="overlay")
        with open(os.path.join(os.path.dirname(fs), "meta.json"), "w") as f:
            json.dump({"chain_id": chain_id, "diff_id": diff_id, "parent": parent,
                       "layer_digest": layer["digest"]}, f)
        inodes[chain_id] = os.stat(fs).st_ino
        parent = chain_id
    orphan = store.content.put(b"a blob an old rmi left behind")
    old = time.time() - 7200
    os.utime(store.content.path(orphan), (old, old))
    return store, image, {"inodes": inodes, "orphan": store.content.path(orphan)}


@pytest.mark.parametrize("driver", ["overlay", "copy"])
def test_old_root_is_migrated_at_daemon_start(driver):
    with own_daemon(driver) as d:
        store, image, old = old_layout_root(d.root)
        d.start()
        assert not os.path.exists(os.path.join(d.root, "images", "snapshots")), "the old copy stayed"
        assert not os.path.exists(old["orphan"]), "unreferenced blobs stayed"
        snaps = committed(d)
        assert set(image.chain_ids) <= set(snaps)
        if driver == "overlay":   # adopted by a rename: the very same directories, not a copy
            for chain_id, ino in old["inodes"].items():
                fs = os.path.join(d.root, "snapshots", driver, snaps[chain_id]["id"], "fs")
                assert os.stat(fs).st_ino == ino
        assert copies_of(d, "old-layout-marker") == 1
        assert ok(d.cli("run", "--rm", "storage/old:1", "cat", "/old-layout-marker")) == "migrated\n"
        assert committed(d).keys() == snaps.keys()


# ---- the "-init" race ----------------------------------------------------------------------------------

def test_lease_keeps_a_fresh_snapshot_from_a_concurrent_prune(tmp_path):
    """Unit stress: one thread commits "ID-init" and stacks "ID" on it, another prunes without pause.
    Without the lease the pruner removes the committed, child-less "-init" in between (the bug)."""
    snap = unionfs.CopySnapshotter(str(tmp_path / "snaps"))
    snap.prepare("base-active")
    snap.commit("base", "base-active")
    done, errors = threading.Event(), []

    def pruner():
        while not done.is_set():
            snap.prune({"base"})

    t = threading.Thread(target=pruner)
    t.start()
    try:
        for i in range(150):
            try:
                with snap.lease(f"c{i}-init"):
                    snap.prepare(f"c{i}-init-active", "base")
                    snap.commit(f"c{i}-init", f"c{i}-init-active")
                    snap.prepare(f"c{i}", f"c{i}-init")
                    snap.remove(f"c{i}")
                    snap.remove(f"c{i}-init")
            except unionfs.SnapshotError as e:
                errors.append(f"round {i}: {e}")
    finally:
        done.set()
        t.join()
    assert errors == []
    assert [i.key for i in snap.list()] == ["base"]


def test_creates_racing_auto_removed_containers(sdaemon):
    """Daemon stress: containers with AutoRemove end (and prune layers) while other creates run.
    Every create must succeed; nothing is left behind."""
    before = store_files(sdaemon)
    since = time.time()
    errors: list[str] = []

    auto_ids: list[str] = []

    def auto_removed(n: int) -> None:
        for _ in range(n):
            status, body = sdaemon.api("POST", "/containers/create",
                                       {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"AutoRemove": True}})
            if status != 201:
                errors.append(f"create (auto-remove): {status} {body}")
                continue
            auto_ids.append(body["Id"])
            status, body = sdaemon.api("POST", f"/containers/{body['Id']}/start")
            if status != 204:
                errors.append(f"start: {status} {body}")

    def create_remove(n: int) -> None:
        for _ in range(n):
            status, body = sdaemon.api("POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"]})
            if status != 201:
                errors.append(f"create: {status} {body}")
                continue
            status, body = sdaemon.api("DELETE", f"/containers/{body['Id']}")
            if status != 204:
                errors.append(f"rm: {status} {body}")

    threads = [threading.Thread(target=auto_removed, args=(12,)),
               threading.Thread(target=create_remove, args=(12,)),
               threading.Thread(target=create_remove, args=(12,))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    destroyed(sdaemon, since, set(auto_ids))   # each auto-removed container is gone, files and all
    assert store_files(sdaemon) == before


def destroyed(d: Daemon, since: float, ids: set[str], timeout: float = 60) -> None:
    """Follow ``GET /events`` (replayed from ``since``) until every container in ``ids`` has had its
    "destroy" event: the daemon emits it once the container's files and snapshots are gone."""
    import socket
    query = urllib.parse.urlencode({"since": f"{since:.9f}", "filters": json.dumps(
        {"type": ["container"], "event": ["destroy"]})})
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(timeout)
    sock.connect(d.sock)
    conn = http.client.HTTPConnection("localhost")
    conn.sock = sock
    conn.request("GET", f"/events?{query}")
    r = conn.getresponse()
    assert r.status == 200
    try:
        while ids:
            line = r.readline()
            assert line, f"the event stream ended before these were destroyed: {ids}"
            ids.discard(json.loads(line)["Actor"]["ID"])
    finally:
        conn.close()


def test_containers_of_an_image_share_its_init_layer(sdaemon):
    """overlay: one init layer per image ("init-<top ChainID>", made when the image arrived), the
    writable layer of every container stacked on it, kept when they go; copy (where it would be a
    second full copy of every image): dockerd's "<id>-init" per container, removed with it. The
    placeholders stay out of ``docker diff`` either way."""
    from minidocker.images.unpack import init_key
    top = chain_ids_of(sdaemon, "busybox")[-1]
    shared = sdaemon.driver == "overlay"
    before = store_files(sdaemon)
    if shared:
        assert init_key(top) in committed(sdaemon)
    ids = []
    for _ in range(2):
        status, body = sdaemon.api("POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"]})
        assert status == 201, body
        ids.append(body["Id"])
    meta = json.load(open(os.path.join(sdaemon.root, "snapshots", sdaemon.driver, "metadata.json")))["snapshots"]
    parents = [meta[cid]["parent"] for cid in ids]
    assert parents == ([init_key(top)] * 2 if shared else [cid + "-init" for cid in ids])
    status, changes = sdaemon.api("GET", f"/containers/{ids[0]}/changes")
    assert status == 200 and not changes, changes
    for cid in ids:
        assert sdaemon.api("DELETE", f"/containers/{cid}")[0] == 204
    assert store_files(sdaemon) == before

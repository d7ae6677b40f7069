"""images/archive.py and ImageStore.gc without a daemon: docker-archive save/load (checked against
the rules docker load applies), OCI layouts (validated by the schemas, oci-image-tool and skopeo,
round-tripped through skopeo and umoci), import, and garbage collection."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile

import pytest

from conftest import need_root, need_tool
from minidocker.images import ImageStore, busybox_available, build_busybox, model
from minidocker.images.archive import ArchiveError, export_layout, import_rootfs, load, save
from minidocker.images.reference import parse_reference
from minidocker.images.store import MEDIA_TYPE_CONFIG, MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_MANIFEST
from minidocker.unionfs import new_snapshotter

from test_images import add_synthetic, canonical_json, make_tar, sha


# containers/image (skopeo, podman) as root keeps a blob-info cache and a lock outside any directory
# we give it: remove them after each test that runs those tools, unless they were there before.
CONTAINERS_TRACES = ["/var/lib/containers", "/dev/shm/libpod_lock"]


@pytest.fixture
def no_host_traces():
    before = {p for p in CONTAINERS_TRACES if os.path.lexists(p)}
    yield
    for p in CONTAINERS_TRACES:
        if p not in before and os.path.lexists(p):
            shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)


def gz_image(store: ImageStore, ref: str, *layers: bytes):
    """An image whose layers are stored gzip-compressed (digest != DiffID)."""
    blobs = [gzip.compress(x, mtime=0) for x in layers]
    for b in blobs:
        store.content.put(b)
    config = canonical_json({"architecture": "amd64", "os": "linux", "created": "2021-01-01T00:00:00Z",
                             "config": {"Cmd": ["sh"], "Labels": {"kind": "gz"}},
                             "rootfs": {"type": "layers", "diff_ids": [sha(x) for x in layers]},
                             "history": [{"created_by": f"layer {n}"} for n in range(len(layers))]})
    store.content.put(config)
    manifest = canonical_json({"schemaVersion": 2, "mediaType": MEDIA_TYPE_MANIFEST,
                               "config": {"mediaType": MEDIA_TYPE_CONFIG, "digest": sha(config),
                                          "size": len(config)},
                               "layers": [{"mediaType": MEDIA_TYPE_LAYER_GZIP, "digest": sha(b),
                                           "size": len(b)} for b in blobs]})
    return store.add_image(manifest, ref)


def check_docker_archive(path: str) -> list[dict]:
    """What docker load (image/tarexport/load.go) relies on, checked file by file."""
    with tarfile.open(path) as tar:
        files = {m.name: m for m in tar.getmembers()}

        def read(name):
            assert name in files and files[name].isreg(), f"{name} missing from the archive"
            assert not name.startswith("/") and ".." not in name.split("/")
            return tar.extractfile(files[name]).read()

        manifest = json.loads(read("manifest.json"))
        assert isinstance(manifest, list) and manifest
        for entry in manifest:
            config_bytes = read(entry["Config"])
            assert entry["Config"] == "blobs/sha256/" + hashlib.sha256(config_bytes).hexdigest()
            config = json.loads(config_bytes)
            model.validate(config, model.DOCKER_CONFIG)
            assert len(entry["Layers"]) == len(config["rootfs"]["diff_ids"])
            for layer, diff_id in zip(entry["Layers"], config["rootfs"]["diff_ids"]):
                data = read(layer)
                assert data[:2] != b"\x1f\x8b", "docker-archive layers are uncompressed tars"
                assert sha(data) == diff_id, f"{layer} is not the DiffID {diff_id}"
                tarfile.open(fileobj=io.BytesIO(data)).getmembers()
            for tag in entry.get("RepoTags") or []:
                assert parse_reference(tag).tag and parse_reference(tag).familiar() == tag
        if "repositories" in files:
            repos = json.loads(read("repositories"))
            for repo, tags in repos.items():
                for tag, layer_id in tags.items():
                    assert any(f"{repo}:{tag}" in (e.get("RepoTags") or []) for e in manifest)
                    assert f"blobs/sha256/{layer_id}" in files
        # docker >= 25 also reads the OCI side of the same archive
        model.validate(json.loads(read("oci-layout")), model.OCI_LAYOUT_HEADER)
        index = json.loads(read("index.json"))
        model.validate(index, model.OCI_INDEX)
        for desc in index["manifests"]:
            assert sha(read("blobs/sha256/" + desc["digest"][7:])) == desc["digest"]
        return manifest


@pytest.fixture
def two_images(tmp_path):
    store = ImageStore(str(tmp_path / "store"))
    base = make_tar(("dir", "etc", None), ("file", "etc/os", "base"))
    top = make_tar(("file", "etc/app", "app"))
    a = add_synthetic(store, [base, top], "app:1", exec_config={"Cmd": ["sh"], "Labels": {"a": "1"}})
    b = gz_image(store, "gz/thing:2", base, make_tar(("file", "z", "z")))
    return store, a, b


def test_save_is_a_docker_archive_and_an_oci_layout(two_images, tmp_path):
    store, a, b = two_images
    out = tmp_path / "out.tar"
    with open(out, "wb") as f:
        save(store, ["app:1", "gz/thing:2"], f)
    manifest = check_docker_archive(str(out))
    assert [e["RepoTags"] for e in manifest] == [["app:1"], ["gz/thing:2"]]
    with tarfile.open(out) as tar:
        repos = json.load(tar.extractfile("repositories"))
    assert repos == {"app": {"1": a.diff_ids[-1][7:]}, "gz/thing": {"2": b.diff_ids[-1][7:]}}


def test_save_load_round_trip_keeps_ids_and_names(two_images, tmp_path):
    store, a, b = two_images
    out = tmp_path / "out.tar"
    with open(out, "wb") as f:
        save(store, ["app:1", "gz/thing:2"], f)
    other = ImageStore(str(tmp_path / "other"))
    result = load(other, str(out))
    assert result.messages == ["Loaded image: app:1", "Loaded image: gz/thing:2"]
    for img in (a, b):
        got = other.resolve(img.refs[0])
        assert (got.id, got.manifest_digest, got.diff_ids) == (img.id, img.manifest_digest, img.diff_ids)


def test_load_of_a_legacy_docker_archive_without_index(two_images, tmp_path):
    """Older docker and podman write only manifest.json, layer tars at <id>/layer.tar."""
    store, a, _ = two_images
    legacy = tmp_path / "legacy.tar"
    with tarfile.open(legacy, "w") as tar:
        def add(name, data):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
        add(a.id[7:] + ".json", store.content.read(a.id))
        layers = []
        for n, layer in enumerate(a.manifest["layers"]):
            add(f"l{n}/layer.tar", store.content.read(layer["digest"]))
            layers.append(f"l{n}/layer.tar")
        add("manifest.json", json.dumps([{"Config": a.id[7:] + ".json", "RepoTags": ["legacy:1"],
                                           "Layers": layers}]).encode())
    other = ImageStore(str(tmp_path / "other"))
    assert load(other, str(legacy)).messages == ["Loaded image: legacy:1"]
    assert other.resolve("legacy:1").id == a.id


def test_load_refuses_a_corrupt_archive_and_names_nothing(two_images, tmp_path):
    store, a, _ = two_images
    out = tmp_path / "out.tar"
    with open(out, "wb") as f:
        save(store, ["app:1"], f)
    bad = tmp_path / "bad.tar"
    layer_name = "blobs/sha256/" + a.diff_ids[-1][7:]
    with tarfile.open(out) as src, tarfile.open(bad, "w") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read() if m.isreg() else None
            if m.name == layer_name:
                data = data[:-1024] + b"\x01" * 1024  # flip the tail of the top layer
            dst.addfile(m, io.BytesIO(data) if data is not None else None)
    other = ImageStore(str(tmp_path / "other"))
    with pytest.raises(ArchiveError, match=r"layer blobs/sha256/.*its content is sha256:.* but the "
                                           r"image config says|digest mismatch"):
        load(other, str(bad))
    assert other.list() == []
    not_tar = tmp_path / "junk"
    not_tar.write_bytes(b"hello")
    with pytest.raises(ArchiveError, match="not a tar archive"):
        load(other, str(not_tar))
    empty = tmp_path / "empty.tar"
    with tarfile.open(empty, "w"):
        pass
    with pytest.raises(ArchiveError, match="neither a docker-archive"):
        load(other, str(empty))


def test_oci_layout_export_is_valid_and_names_by_tag(two_images, tmp_path):
    store, a, b = two_images
    dest = tmp_path / "layout"
    export_layout(store, ["app:1", "gz/thing:2"], str(dest))
    index = json.loads((dest / "index.json").read_text())
    model.validate(index, model.OCI_INDEX)
    assert [e["annotations"] for e in index["manifests"]] == [
        {"io.containerd.image.name": "docker.io/library/app:1", "org.opencontainers.image.ref.name": "1"},
        {"io.containerd.image.name": "docker.io/gz/thing:2", "org.opencontainers.image.ref.name": "2"}]
    for name in os.listdir(dest / "blobs" / "sha256"):
        assert hashlib.sha256((dest / "blobs" / "sha256" / name).read_bytes()).hexdigest() == name
    other = ImageStore(str(tmp_path / "other"))
    assert load(other, str(dest)).messages == ["Loaded image: app:1", "Loaded image: gz/thing:2"]


@pytest.fixture
def busybox_layout(tmp_path):
    if not busybox_available():
        pytest.skip("busybox-static")
    store = ImageStore(str(tmp_path / "store"))
    img = build_busybox(store)
    dest = tmp_path / "layout"
    export_layout(store, ["busybox"], str(dest))
    return store, img, dest


def test_oci_image_tool_validates_our_layout(busybox_layout):
    tool = need_tool("oci-image-tool")
    _, _, dest = busybox_layout
    r = subprocess.run([tool, "validate", "--type", "image", "--ref", "name=latest", str(dest)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "Validation succeeded" in r.stdout, r.stdout + r.stderr


def test_skopeo_inspects_and_round_trips_our_layout(busybox_layout, tmp_path, no_host_traces):
    skopeo = need_tool("skopeo")
    store, img, dest = busybox_layout
    info = json.loads(subprocess.run([skopeo, "inspect", f"oci:{dest}:latest"], check=True,
                                     capture_output=True, text=True).stdout)
    assert info["Digest"] == img.manifest_digest and info["Layers"] == [img.manifest["layers"][0]["digest"]]
    # --preserve-digests: byte-identical round trip
    same = tmp_path / "same"
    subprocess.run([skopeo, "copy", "-q", "--preserve-digests", f"oci:{dest}:latest", f"oci:{same}:latest"],
                   check=True)
    assert json.loads((same / "index.json").read_text())["manifests"][0]["digest"] == img.manifest_digest
    # a default copy compresses the layer: a new manifest, the same image (config) id
    other = tmp_path / "other"
    subprocess.run([skopeo, "copy", "-q", f"oci:{dest}:latest", f"oci:{other}:latest"], check=True)
    skopeo_digest = json.loads((other / "index.json").read_text())["manifests"][0]["digest"]
    second = ImageStore(str(tmp_path / "second"),
                        snapshotter=new_snapshotter("overlay", str(tmp_path / "snap")) if os.geteuid() == 0 else None)
    result = load(second, str(other), name="busybox")
    assert result.messages == ["Loaded image: busybox:latest"]
    loaded = second.resolve("busybox")
    assert loaded.id == img.id and loaded.manifest_digest == skopeo_digest
    assert loaded.manifest["layers"][0]["mediaType"] == MEDIA_TYPE_LAYER_GZIP
    # ... and back out of minidocker and through skopeo again: still the same digests
    again, back = tmp_path / "again", tmp_path / "back"
    export_layout(second, ["busybox"], str(again))
    subprocess.run([skopeo, "copy", "-q", f"oci:{again}:latest", f"oci:{back}:latest"], check=True)
    for layout in (again, back):
        assert json.loads((layout / "index.json").read_text())["manifests"][0]["digest"] == skopeo_digest
    if os.geteuid() == 0:
        fs = second.snapshotter.fs(loaded.chain_ids[0])  # extracted by the load
        assert os.path.islink(os.path.join(fs, "bin", "sh"))


def test_umoci_repacked_layout_loads(busybox_layout, tmp_path):
    need_root()
    umoci = need_tool("umoci")
    _, img, dest = busybox_layout
    bundle = tmp_path / "bundle"
    subprocess.run([umoci, "unpack", "--image", f"{dest}:latest", str(bundle)], check=True,
                   capture_output=True)
    (bundle / "rootfs" / "hello.txt").write_text("from umoci\n")
    os.unlink(bundle / "rootfs" / "bin" / "ls")
    subprocess.run([umoci, "repack", "--image", f"{dest}:v2", str(bundle)], check=True, capture_output=True)
    subprocess.run([umoci, "config", "--image", f"{dest}:v2", "--config.cmd", "cat",
                    "--config.cmd", "/hello.txt"], check=True, capture_output=True)
    store = ImageStore(str(tmp_path / "other"), snapshotter=new_snapshotter("overlay", str(tmp_path / "snap")))
    result = load(store, str(dest))
    assert result.messages == ["Loaded image: busybox:latest", "Loaded image: busybox:v2"]
    v2 = store.resolve("busybox:v2")
    assert len(v2.diff_ids) == 2 and v2.diff_ids[0] == img.diff_ids[0] and v2.cmd == ["cat", "/hello.txt"]
    top = store.snapshotter.fs(v2.chain_ids[1])  # extracted by the load, once per ChainID
    assert len(store.snapshotter.list()) == 2
    assert open(os.path.join(top, "hello.txt")).read() == "from umoci\n"
    import stat
    st = os.lstat(os.path.join(top, "bin", "ls"))  # umoci's .wh.ls, as overlay's 0:0 whiteout
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def test_import_directory_tarball_and_changes(tmp_path):
    store = ImageStore(str(tmp_path / "store"))
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "tool").write_text("#!/bin/sh\n")
    img = import_rootfs(store, str(root), "imp:dir", changes=[
        'CMD ["/bin/tool"]', "ENV A=1 B=2", "LABEL x=y", "EXPOSE 80", "WORKDIR /srv", "USER nobody"],
        message="hi")
    assert img.cmd == ["/bin/tool"] and img.env == ["A=1", "B=2"] and img.labels == {"x": "y"}
    assert img.working_dir == "/srv" and img.user == "nobody"
    assert img.config["config"]["ExposedPorts"] == {"80/tcp": {}}
    assert img.config["history"][0]["comment"] == "hi"
    model.validate(img.config, model.OCI_CONFIG)
    tgz = tmp_path / "r.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(root, arcname=".")
    img2 = import_rootfs(store, str(tgz), "imp:tgz")
    assert img2.manifest["layers"][0]["mediaType"] == MEDIA_TYPE_LAYER_GZIP
    with gzip.open(tgz) as f:
        assert img2.diff_ids == [sha(f.read())]


def test_import_refuses_bad_input_and_stores_nothing(tmp_path):
    store = ImageStore(str(tmp_path / "store"))
    before = sorted(os.listdir(store.content.blob_dir))
    evil = tmp_path / "evil.tar"
    evil.write_bytes(make_tar(("file", "ok", "1"), ("file", "../../escape", "x")))
    with pytest.raises(ArchiveError, match="escapes the target"):
        import_rootfs(store, str(evil), "evil:1")
    junk = tmp_path / "junk"
    junk.write_bytes(gzip.compress(b"not a tar" * 100))
    with pytest.raises(ArchiveError, match="not a \\(complete\\) tar"):
        import_rootfs(store, str(junk), "junk:1")
    with pytest.raises(ValueError, match="FROM is not a valid change"):
        import_rootfs(store, str(evil), "x:1", changes=["FROM scratch"])
    assert sorted(os.listdir(store.content.blob_dir)) == before and store.list() == []
    assert [n for n in os.listdir(store.root) if n.startswith(".import")] == []


def test_gc_removes_only_unreferenced_blobs(two_images):
    store, a, b = two_images
    shared = a.manifest["layers"][0]["digest"]
    stray = store.content.put(b"nobody references me")
    assert store.gc().removed == [stray]
    store.delete(b)
    result = store.gc()
    gone = {b.manifest_digest, b.id} | {l["digest"] for l in b.manifest["layers"]}
    assert set(result.removed) == gone and result.reclaimed > 0
    assert store.content.has(shared) is False or shared not in gone
    for d in [a.manifest_digest, a.id] + [l["digest"] for l in a.manifest["layers"]]:
        assert store.content.has(d), d
    assert store.resolve("app:1").id == a.id
    young = store.content.put(b"just ingested")
    assert young not in store.gc(grace=3600).removed and store.content.has(young)

"""Images: references, the OCI content/image store, layer application, the offline busybox image.

No mocks: real files, real tars, real threads, the real /bin/busybox. Most tests need no root; the
ones that make device nodes, chown or overlay whiteouts say so with need_root().
"""
from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import json
import os
import stat
import subprocess
import tarfile
import threading
from urllib.parse import urlparse

import pytest

from conftest import need, need_root, need_tool
from minidocker.images import (AmbiguousImage, BlobNotFound, ContentStore, DigestMismatch,
                               ImageNotFound, ImageStore, InvalidDigest, InvalidImage,
                               InvalidReference, LayerError, apply_layer, build_busybox,
                               busybox_available, chain_ids, parse_reference)
from minidocker.images.busybox import build_layer, canonical_json
from minidocker.unionfs import new_snapshotter
from minidocker.images.store import (MEDIA_TYPE_CONFIG, MEDIA_TYPE_LAYER, MEDIA_TYPE_MANIFEST,
                                     REF_NAME_ANNOTATION)

# The OCI image-spec v1.1.1 schemas, shipped verbatim in the package (images/model.py uses them too).
from minidocker.images.model import SCHEMA_DIR  # noqa: E402
HEX = "a" * 64
D = "sha256:" + HEX


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ============================================================================================
# References

VALID = [
    # input, str(), familiar(), domain, path, tag, digest
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest",
     "docker.io", "library/busybox", "latest", None),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36",
     "docker.io", "library/busybox", "1.36", None),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest",
     "docker.io", "library/busybox", "latest", None),
    ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest",
     "docker.io", "library/busybox", "latest", None),
    ("index.docker.io/library/busybox:latest", "docker.io/library/busybox:latest",
     "busybox:latest", "docker.io", "library/busybox", "latest", None),
    ("alice/tool:1.0", "docker.io/alice/tool:1.0", "alice/tool:1.0",
     "docker.io", "alice/tool", "1.0", None),
    ("docker.io/library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest",
     "docker.io", "library/a/b", "latest", None),
    ("localhost/x", "localhost/x:latest", "localhost/x:latest", "localhost", "x", "latest", None),
    ("localhost:5000/x:v1", "localhost:5000/x:v1", "localhost:5000/x:v1",
     "localhost:5000", "x", "v1", None),
    (f"host:5000/a/b:tag@{D}", f"host:5000/a/b:tag@{D}", f"host:5000/a/b:tag@{D}",
     "host:5000", "a/b", "tag", D),
    (f"busybox@{D}", f"docker.io/library/busybox@{D}", f"busybox@{D}",
     "docker.io", "library/busybox", None, D),
    ("example.com/a__b/c-d/e--f.g:v_1.0-rc", "example.com/a__b/c-d/e--f.g:v_1.0-rc",
     "example.com/a__b/c-d/e--f.g:v_1.0-rc", "example.com", "a__b/c-d/e--f.g", "v_1.0-rc", None),
    ("[::1]:5000/x", "[::1]:5000/x:latest", "[::1]:5000/x:latest", "[::1]:5000", "x", "latest", None),
    # an upper-case first component cannot be a Docker Hub namespace, so it is a registry host
    ("Foo/bar", "Foo/bar:latest", "Foo/bar:latest", "Foo", "bar", "latest", None),
    ("Registry.Example.com/x", "Registry.Example.com/x:latest", "Registry.Example.com/x:latest",
     "Registry.Example.com", "x", "latest", None),
    ("x:" + "t" * 128, "docker.io/library/x:" + "t" * 128, "x:" + "t" * 128,
     "docker.io", "library/x", "t" * 128, None),
]


@pytest.mark.parametrize("s,full,fam,domain,path,tag,digest", VALID)
def test_parse_reference_valid(s, full, fam, domain, path, tag, digest):
    ref = parse_reference(s)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)
    assert str(ref) == full
    assert ref.familiar() == fam
    assert ref.repository == f"{domain}/{path}"
    assert parse_reference(full) == ref  # normalising is idempotent


INVALID = [
    ("Busybox", 'invalid reference format: repository name must be lowercase: "Busybox"'),
    ("foo/Bar:1", 'invalid reference format: repository name must be lowercase: "foo/Bar:1"'),
    ("", 'invalid reference format: repository name must have at least one component: ""'),
    (":tag", 'invalid reference format: repository name must have at least one component: ":tag"'),
    ("busybox:", 'invalid reference format: invalid tag format (want '
                 '[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}): "busybox:"'),
    ("busybox:-x", 'invalid reference format: invalid tag format (want '
                   '[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}): "busybox:-x"'),
    ("x:" + "t" * 129, 'invalid reference format: invalid tag format (want '
                       '[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}): "x:' + "t" * 129 + '"'),
    ("busybox@sha256:abc", 'invalid reference format: invalid sha256 digest (want lowercase hex '
                           'of the right length): "busybox@sha256:abc"'),
    ("busybox@md5:" + "a" * 32, "invalid reference format: unsupported digest algorithm 'md5': "
                                '"busybox@md5:' + "a" * 32 + '"'),
    ("busybox@nonsense", 'invalid reference format: invalid digest format: "busybox@nonsense"'),
    ("a//b", 'invalid reference format: repository name has an empty path component: "a//b"'),
    ("a/", 'invalid reference format: repository name has an empty path component: "a/"'),
    ("-a", "invalid reference format: invalid repository name component '-a' (want lowercase "
           "letters and digits joined by '.', '_', '__' or '-'): \"-a\""),
    ("a/b_", "invalid reference format: invalid repository name component 'b_' (want lowercase "
             "letters and digits joined by '.', '_', '__' or '-'): \"a/b_\""),
    ("a/b___c", "invalid reference format: invalid repository name component 'b___c' (want "
                "lowercase letters and digits joined by '.', '_', '__' or '-'): \"a/b___c\""),
    (HEX, "invalid reference format: repository name cannot be a 64-character hex string "
          f'(that is an image id): "{HEX}"'),
    ("bad_host:5000/x", "invalid reference format: invalid registry host 'bad_host:5000': "
                        '"bad_host:5000/x"'),
    ("a/" + "b" * 250, "invalid reference format: repository name must not be more than 255 "
                       'characters: "a/' + "b" * 250 + '"'),
]


@pytest.mark.parametrize("s,message", INVALID)
def test_parse_reference_invalid(s, message):
    with pytest.raises(InvalidReference) as e:
        parse_reference(s)
    assert str(e.value) == message
    assert isinstance(e.value, ValueError)


def test_name_length_counts_the_normalized_name():
    ok = "b" * (255 - len("docker.io/a/"))
    assert len(parse_reference("a/" + ok).repository) == 255
    with pytest.raises(InvalidReference, match="255"):
        parse_reference("a/" + ok + "b")


# ============================================================================================
# Content store


def listing(path: str) -> list[str]:
    return sorted(os.listdir(path))


def test_content_store_put_read(tmp_path):
    cs = ContentStore(str(tmp_path))
    digest = cs.put(b"hello")
    assert digest == sha(b"hello")
    assert cs.has(digest) and cs.read(digest) == b"hello" and cs.size(digest) == 5
    assert cs.path(digest) == str(tmp_path / "blobs" / "sha256" / digest[7:])
    assert cs.put(b"hello", expected=digest) == digest  # idempotent
    assert cs.verify(digest)
    assert cs.delete(digest) and not cs.has(digest) and not cs.delete(digest)
    with pytest.raises(BlobNotFound):
        cs.read(digest)


def test_content_store_mismatch_leaves_nothing(tmp_path):
    cs = ContentStore(str(tmp_path))
    with pytest.raises(DigestMismatch):
        cs.put(b"hello", expected=sha(b"other"))
    src = tmp_path / "src"
    src.write_bytes(b"x" * 100_000)
    with pytest.raises(DigestMismatch, match="digest mismatch"):
        cs.ingest(str(src), sha(b"y" * 100_000), 100_000)
    with pytest.raises(DigestMismatch, match="size mismatch"):
        cs.ingest(str(src), sha(b"x" * 100_000), 99_999)
    with pytest.raises(DigestMismatch, match="size mismatch"):
        cs.ingest(io.BytesIO(b"x" * 10), sha(b"x" * 10), 11)
    assert listing(cs.blob_dir) == []  # no blob and no temporary file


def test_content_store_ingest(tmp_path):
    cs = ContentStore(str(tmp_path))
    data = os.urandom(3 << 20)
    assert cs.ingest(io.BytesIO(data), sha(data), len(data)) == sha(data)
    assert cs.read(sha(data)) == data
    assert listing(cs.blob_dir) == [sha(data)[7:]]


@pytest.mark.parametrize("bad", ["sha256:ABC", "sha256:" + "A" * 64, "md5:" + "a" * 32,
                                 "../../etc/passwd", "sha256:" + "a" * 63, "a" * 64])
def test_content_store_validates_digests(tmp_path, bad):
    cs = ContentStore(str(tmp_path))
    with pytest.raises(InvalidDigest):
        cs.has(bad)
    with pytest.raises(InvalidDigest):
        cs.put(b"x", expected=bad)


def test_concurrent_puts_of_the_same_blob(tmp_path):
    cs = ContentStore(str(tmp_path))
    data = os.urandom(1 << 20)
    results, errors = [], []
    barrier = threading.Barrier(16)

    def put():
        try:
            barrier.wait()
            results.append(ContentStore(str(tmp_path)).ingest(io.BytesIO(data), sha(data)))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=put) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and results == [sha(data)] * 16
    assert listing(cs.blob_dir) == [sha(data)[7:]] and cs.read(sha(data)) == data


# ============================================================================================
# OCI schemas (with $ref resolution: every $ref is resolved by file name in the schema dir)


def validator(schema_file: str):
    jsonschema = pytest.importorskip("jsonschema")
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    def retrieve(uri: str):
        with open(os.path.join(SCHEMA_DIR, os.path.basename(urlparse(uri).path))) as f:
            return Resource.from_contents(json.load(f), default_specification=DRAFT4)

    with open(os.path.join(SCHEMA_DIR, schema_file)) as f:
        schema = json.load(f)
    return jsonschema.Draft4Validator(schema, registry=Registry(retrieve=retrieve),
                                      format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)


def assert_valid(schema_file: str, doc) -> None:
    errors = [e.message for e in validator(schema_file).iter_errors(doc)]
    assert errors == [], f"{schema_file}: {errors}"


def test_schema_validation_really_follows_refs():
    """A bad digest is only caught via content-descriptor.json -> defs-descriptor.json."""
    bad = {"schemaVersion": 2, "config": {"mediaType": MEDIA_TYPE_CONFIG, "size": 1,
                                          "digest": "sha256:NOT A DIGEST"},
           "layers": [{"mediaType": MEDIA_TYPE_LAYER, "size": 1, "digest": D}]}
    assert not validator("image-manifest-schema.json").is_valid(bad)


# ============================================================================================
# Building blocks for synthetic images


def make_tar(*entries, gz: bool = False) -> bytes:
    """entries: (kind, name, arg, {attrs}) with kind file/dir/sym/link/chr/fifo."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, arg, *rest in entries:
            attrs = rest[0] if rest else {}
            ti = tarfile.TarInfo(name)
            ti.mtime = attrs.get("mtime", 1_000_000_000)
            ti.mode = attrs.get("mode", 0o755 if kind == "dir" else 0o644)
            ti.uid, ti.gid = attrs.get("uid", 0), attrs.get("gid", 0)
            ti.pax_headers = attrs.get("pax", {})
            data = None
            if kind == "file":
                data = arg if isinstance(arg, bytes) else arg.encode()
                ti.size = len(data)
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, arg
            elif kind == "link":
                ti.type, ti.linkname = tarfile.LNKTYPE, arg
            elif kind == "chr":
                ti.type, (ti.devmajor, ti.devminor) = tarfile.CHRTYPE, arg
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0) if gz else raw


def add_synthetic(store: ImageStore, layers: list[bytes], ref: str | None = None,
                  exec_config: dict | None = None, diff_ids: list[str] | None = None):
    """Store an image made of the given (uncompressed) layer tars."""
    for layer in layers:
        store.content.put(layer)
    config = canonical_json({
        "architecture": "amd64", "os": "linux", "created": "2020-01-01T00:00:00Z",
        "config": exec_config or {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids or [sha(x) for x in layers]}})
    store.content.put(config)
    manifest = canonical_json({
        "schemaVersion": 2, "mediaType": MEDIA_TYPE_MANIFEST,
        "config": {"mediaType": MEDIA_TYPE_CONFIG, "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": MEDIA_TYPE_LAYER, "digest": sha(x), "size": len(x)}
                   for x in layers]})
    return store.add_image(manifest, ref)


def small_layer(tag: str = "x") -> bytes:
    return make_tar(("dir", "etc", None), ("file", "etc/which", tag))


# ============================================================================================
# Image store


def test_layout_files_are_valid_oci(tmp_path):
    store = ImageStore(str(tmp_path))
    with open(tmp_path / "oci-layout") as f:
        assert_valid("image-layout-schema.json", json.load(f))
    add_synthetic(store, [small_layer()], "thing:1")
    with open(tmp_path / "index.json") as f:
        index = json.load(f)
    assert_valid("image-index-schema.json", index)
    [entry] = index["manifests"]
    assert entry["annotations"] == {REF_NAME_ANNOTATION: "docker.io/library/thing:1"}
    assert entry["mediaType"] == MEDIA_TYPE_MANIFEST
    assert entry["platform"] == {"architecture": "amd64", "os": "linux"}
    assert os.path.isdir(tmp_path / "blobs" / "sha256")


def test_chain_ids_follow_the_spec():
    a, b, c = (sha(x) for x in (b"a", b"b", b"c"))
    ab = sha(f"{a} {b}".encode())
    assert chain_ids([a]) == [a]
    assert chain_ids([a, b, c]) == [a, ab, sha(f"{ab} {c}".encode())]


def test_add_image_checks_blobs_and_config(tmp_path):
    store = ImageStore(str(tmp_path))
    layer = small_layer()
    config = canonical_json({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [sha(layer)]}})
    manifest = canonical_json({
        "schemaVersion": 2, "mediaType": MEDIA_TYPE_MANIFEST,
        "config": {"mediaType": MEDIA_TYPE_CONFIG, "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": MEDIA_TYPE_LAYER, "digest": sha(layer), "size": len(layer)}]})
    with pytest.raises(BlobNotFound, match="image config"):
        store.add_image(manifest, "x")
    store.content.put(config)
    with pytest.raises(BlobNotFound, match="layer 1 of 1"):
        store.add_image(manifest, "x")
    with pytest.raises(InvalidImage, match="2 diff_ids for 1 layers"):
        add_synthetic(store, [layer], "x", diff_ids=[sha(layer), sha(layer)])
    with pytest.raises(InvalidImage, match="schemaVersion"):
        store.add_image(b'{"schemaVersion": 1}', "x")
    with pytest.raises(InvalidReference):
        add_synthetic(store, [layer], f"x@{D}")  # tags cannot carry digests
    assert store.list() == []


def test_tag_untag_delete_and_dangling(tmp_path):
    store = ImageStore(str(tmp_path))
    one = add_synthetic(store, [small_layer("1")], "app:1")
    assert one.refs == ["docker.io/library/app:1"] and one.repo_tags == ["app:1"]
    assert store.tag(one, "example.com/team/app:prod") == "example.com/team/app:prod"
    assert store.resolve("example.com/team/app:prod").id == one.id
    assert sorted(store.resolve("app:1").refs) == ["docker.io/library/app:1",
                                                   "example.com/team/app:prod"]
    # moving a tag leaves the old image dangling but present
    two = add_synthetic(store, [small_layer("2")], "app:1")
    assert store.resolve("app:1").id == two.id
    assert store.resolve(one.id).refs == ["example.com/team/app:prod"]
    assert store.untag("example.com/team/app:prod") is True
    assert store.untag("example.com/team/app:prod") is False
    dangling = store.resolve(one.id)
    assert dangling.refs == [] and {i.id for i in store.list()} == {one.id, two.id}
    assert store.delete(two) == ["docker.io/library/app:1"]
    assert store.delete(dangling) == []
    assert store.list() == []
    with pytest.raises(ImageNotFound, match="^No such image: app:1$"):
        store.resolve("app:1")
    with open(tmp_path / "index.json") as f:
        assert json.load(f)["manifests"] == []


def test_untagged_add_is_listed(tmp_path):
    store = ImageStore(str(tmp_path))
    image = add_synthetic(store, [small_layer()], None)
    assert [i.id for i in store.list()] == [image.id] and image.refs == []


def test_concurrent_tagging_loses_nothing(tmp_path):
    store = ImageStore(str(tmp_path))
    image = add_synthetic(store, [small_layer()], "base")

    def tag(n):
        ImageStore(str(tmp_path)).tag(image.id, f"t{n}:v")

    threads = [threading.Thread(target=tag, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(tmp_path / "index.json") as f:
        index = json.load(f)  # valid JSON: never half-written
    assert_valid("image-index-schema.json", index)
    names = {e["annotations"][REF_NAME_ANNOTATION] for e in index["manifests"]}
    assert names == {"docker.io/library/base:latest"} | {f"docker.io/library/t{n}:v" for n in range(20)}
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]


def test_resolve_ambiguous_prefix(tmp_path):
    """Find two configs whose ids share 4 hex digits (by brute force, in memory), store both."""
    seen = {}
    for n in itertools.count():
        cfg = {"Cmd": ["sh"], "Labels": {"n": str(n)}}
        config = canonical_json({"architecture": "amd64", "os": "linux",
                                 "created": "2020-01-01T00:00:00Z", "config": cfg,
                                 "rootfs": {"type": "layers", "diff_ids": [sha(small_layer())]}})
        prefix = sha(config)[7:11]
        if prefix in seen:
            break
        seen[prefix] = cfg
    store = ImageStore(str(tmp_path))
    a = add_synthetic(store, [small_layer()], "a", seen[prefix])
    b = add_synthetic(store, [small_layer()], "b", cfg)
    assert a.id[7:11] == b.id[7:11] == prefix
    with pytest.raises(AmbiguousImage, match=f"^No such image: {prefix} "):
        store.resolve(prefix)
    assert store.resolve(a.id[7:20]).id == a.id


# ============================================================================================
# The busybox image


def need_busybox():
    need(busybox_available("/bin/busybox"), "/bin/busybox (apt-get install busybox-static; make setup)")


@pytest.fixture
def busybox_store(tmp_path):
    need_busybox()
    store = ImageStore(str(tmp_path / "store"))
    return store, build_busybox(store)


def test_build_busybox_is_reproducible(tmp_path):
    need_busybox()
    a = build_busybox(ImageStore(str(tmp_path / "a")))
    b = build_busybox(ImageStore(str(tmp_path / "b")))
    assert (a.manifest_digest, a.id) == (b.manifest_digest, b.id)
    assert (tmp_path / "a" / "index.json").read_bytes() == (tmp_path / "b" / "index.json").read_bytes()


def test_busybox_image_metadata(busybox_store):
    store, image = busybox_store
    mtime = int(os.stat("/bin/busybox").st_mtime)
    config_bytes = store.content.read(image.id)
    assert sha(config_bytes) == image.id == image.manifest["config"]["digest"]
    assert_valid("config-schema.json", json.loads(config_bytes))
    assert_valid("image-manifest-schema.json", json.loads(store.content.read(image.manifest_digest)))
    assert image.refs == ["docker.io/library/busybox:latest"]
    assert image.created == mtime and image.config["created"].endswith("Z")
    assert image.cmd == ["sh"] and image.entrypoint is None and image.user == ""
    assert image.env == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    assert image.config["os"] == "linux"
    assert image.config["architecture"] in ("amd64", "arm64", "arm", "386", "ppc64le", "s390x")
    [layer] = image.manifest["layers"]
    assert layer["mediaType"] == MEDIA_TYPE_LAYER
    assert image.diff_ids == [layer["digest"]] == image.chain_ids  # uncompressed, one layer
    assert image.size == layer["size"] == store.content.size(layer["digest"])
    assert "busybox-static" in image.config["history"][0]["created_by"]


def test_busybox_layer_tar(busybox_store):
    store, image = busybox_store
    mtime = int(os.stat("/bin/busybox").st_mtime)
    data = store.content.read(image.diff_ids[0])
    assert data == build_layer()  # deterministic
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names) and len(names) == len(set(names))
    by = {m.name: m for m in members}
    assert by["bin/sh"].issym() and by["bin/sh"].linkname == "/bin/busybox"
    assert by["usr/bin/env"].linkname == "/bin/busybox"
    assert by["bin/busybox"].isreg() and by["bin/busybox"].mode == 0o755
    assert by["bin/busybox"].size == os.path.getsize("/bin/busybox")
    assert by["tmp"].mode == 0o1777 and by["root"].mode == 0o700
    assert all(m.uid == m.gid == 0 and m.mtime == mtime and not m.pax_headers for m in members)
    assert {"bin", "dev", "etc", "proc", "sys", "usr/bin", "usr/sbin", "sbin", "var"} <= set(by)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        passwd = tar.extractfile("etc/passwd").read().decode()
    assert passwd.startswith("root:x:0:0:root:/root:/bin/sh\n") and "nobody:x:65534" in passwd


def test_resolve_busybox(busybox_store):
    store, image = busybox_store
    hexid = image.id[7:]
    for name in ["busybox", "busybox:latest", "docker.io/library/busybox:latest",
                 "library/busybox", image.id, hexid, hexid[:4], hexid[:12], "sha256:" + hexid[:5],
                 f"busybox@{image.manifest_digest}"]:
        assert store.resolve(name).id == image.id, name
    for name, message in [("busybox:1.0", "No such image: busybox:1.0"),
                          ("nosuch", "No such image: nosuch:latest"),
                          ("example.com/busybox", "No such image: example.com/busybox:latest"),
                          ("sha256:" + "0" * 64, "No such image: sha256:" + "0" * 64),
                          (f"other@{image.manifest_digest}",
                           f"No such image: other@{image.manifest_digest}")]:
        with pytest.raises(ImageNotFound) as e:
            store.resolve(name)
        assert str(e.value) == message
    with pytest.raises(InvalidReference):
        store.resolve("Busybox")


def snapshot_store(path, driver="overlay"):
    """An image store that extracts into a snapshotter, as the daemon's does."""
    return ImageStore(str(path / "store"), snapshotter=new_snapshotter(driver, str(path / "snapshots")))


def stack(snap, chain_id: str) -> list[str]:
    """The directories of a committed chain, top-most first (overlay's lowerdir order)."""
    return [snap.fs(chain_id)] + [snap.fs(p.key) for p in snap.parents(chain_id)]


@pytest.mark.parametrize("driver", ["overlay", "copy"])
def test_add_image_extracts_once_into_the_snapshotter(tmp_path, driver):
    need_busybox()
    store = snapshot_store(tmp_path, driver)
    image = build_busybox(store)
    snap = store.snapshotter
    fs = snap.fs(image.chain_ids[0])  # extracted when the image was added, committed by ChainID
    info = snap.stat(image.chain_ids[0])
    assert info.kind == "committed" and info.labels["diff_id"] == image.diff_ids[0]
    busybox = os.path.join(fs, "bin", "busybox")
    assert os.access(busybox, os.X_OK) and os.readlink(os.path.join(fs, "bin", "sh")) == "/bin/busybox"
    assert stat.S_IMODE(os.stat(os.path.join(fs, "tmp")).st_mode) == 0o1777
    out = subprocess.run([busybox, "echo", "hello"], capture_output=True, text=True, check=True)
    assert out.stdout == "hello\n"
    before = os.stat(fs), os.stat(busybox)
    again = build_busybox(store)                # the same image added again: nothing re-extracted
    assert again.id == image.id and snap.fs(image.chain_ids[0]) == fs
    after = os.stat(fs), os.stat(busybox)
    assert [(s.st_ino, s.st_mtime_ns, s.st_ctime_ns) for s in before] == \
           [(s.st_ino, s.st_mtime_ns, s.st_ctime_ns) for s in after]
    assert [i.key for i in snap.list()] == [image.chain_ids[0]]   # no extraction left behind
    assert not os.path.exists(os.path.join(store.root, "snapshots"))  # no second copy in the store


def test_layers_shared_and_ordered(tmp_path):
    need_busybox()
    store = snapshot_store(tmp_path)
    image = build_busybox(store)
    base = store.content.read(image.diff_ids[0])
    top = make_tar(("dir", "etc", None), ("file", "etc/motd", "hi\n"))
    derived = add_synthetic(store, [base, top], "derived", {"Cmd": ["cat", "/etc/motd"]})
    snap = store.snapshotter
    dirs = stack(snap, derived.chain_ids[1])
    assert dirs[1] == snap.fs(image.chain_ids[0])  # the shared base, extracted once
    assert len(snap.list()) == 2
    assert os.listdir(dirs[0]) == ["etc"] and open(os.path.join(dirs[0], "etc/motd")).read() == "hi\n"
    info = snap.stat(derived.chain_ids[1])
    assert info.parent == image.chain_ids[0] and info.labels["diff_id"] == sha(top)


def test_wrong_diff_id_is_refused_and_leaves_nothing(tmp_path):
    store = snapshot_store(tmp_path)
    layer = small_layer()
    with pytest.raises(LayerError, match="image config says"):
        add_synthetic(store, [layer], "liar", diff_ids=[sha(b"something else")])
    assert store.snapshotter.list() == []       # neither a committed layer nor an extraction
    assert store.list() == []                   # and no image recorded


# ============================================================================================
# apply_layer


def apply(tmp_path, *entries, gz=False, target="root", **kw):
    root = tmp_path / target
    root.mkdir(exist_ok=True)
    return root, apply_layer(io.BytesIO(make_tar(*entries, gz=gz)), str(root), **kw)


def test_apply_layer_basics(tmp_path):
    layer = [("dir", "a", None, {"mode": 0o750, "mtime": 1234}),
             ("file", "a/f", "data", {"mode": 0o4755, "mtime": 5678}),
             ("sym", "a/s", "/a/f"),
             ("link", "a/h", "a/f"),
             ("fifo", "a/p", None),
             ("file", "/abs/evil", "stays inside")]
    root, result = apply(tmp_path, *layer)
    assert result.diff_id == sha(make_tar(*layer)) and result.entries == 6
    st = os.stat(root / "a" / "f")
    assert (root / "a" / "f").read_text() == "data" and stat.S_IMODE(st.st_mode) == 0o4755
    assert st.st_mtime == 5678 and st.st_ino == os.stat(root / "a" / "h").st_ino
    assert os.readlink(root / "a" / "s") == "/a/f"
    assert stat.S_ISFIFO(os.lstat(root / "a" / "p").st_mode)
    dst = os.stat(root / "a")
    assert stat.S_IMODE(dst.st_mode) == 0o750 and dst.st_mtime == 1234  # set after its children
    assert (root / "abs" / "evil").read_text() == "stays inside"  # leading "/" is stripped


def test_apply_layer_gzip_is_detected(tmp_path):
    layer = [("dir", "d", None), ("file", "d/x", "1")]
    root, result = apply(tmp_path, *layer, gz=True)
    assert (root / "d" / "x").read_text() == "1"
    assert result.diff_id == sha(make_tar(*layer))  # the DiffID is of the uncompressed tar


def test_apply_layer_refuses_zstd_and_garbage(tmp_path):
    with pytest.raises(LayerError, match="zstd"):
        apply_layer(io.BytesIO(b"\x28\xb5\x2f\xfd" + b"\0" * 100), str(tmp_path))
    with pytest.raises(LayerError):
        apply_layer(io.BytesIO(b"\x1f\x8bnot gzip at all" * 10), str(tmp_path))


def test_whiteouts_copy_semantics(tmp_path):
    root, _ = apply(tmp_path, ("dir", "a", None), ("file", "a/x", "x"), ("file", "a/y", "y"),
                    ("dir", "b", None), ("file", "b/z", "z"))
    apply(tmp_path, ("file", "a/.wh.x", ""), ("file", ".wh.b", ""), ("file", "a/.wh.nothere", ""))
    assert sorted(os.listdir(root)) == ["a"] and os.listdir(root / "a") == ["y"]


@pytest.mark.parametrize("marker_first", [True, False])
def test_opaque_whiteout_copy_semantics(tmp_path, marker_first):
    root, _ = apply(tmp_path, ("dir", "a", None), ("dir", "a/b", None), ("dir", "a/b/c", None),
                    ("file", "a/b/c/bar", "old"), ("file", "a/old", "old"), ("file", "keep", "k"))
    marker = [("file", "a/.wh..wh..opq", "")]
    new = [("dir", "a", None), ("dir", "a/b", None), ("dir", "a/b/c", None),
           ("file", "a/b/c/foo", "new")]
    apply(tmp_path, *(marker + new if marker_first else new + marker))
    assert os.listdir(root / "a") == ["b"] and os.listdir(root / "a" / "b" / "c") == ["foo"]
    assert (root / "keep").exists()


@pytest.mark.parametrize("name", ["../evil", "a/../../evil", "./../evil"])
def test_refuses_escaping_names(tmp_path, name):
    with pytest.raises(LayerError, match="escapes the target") as e:
        apply(tmp_path, ("file", name, "boom"))
    assert repr(name) in str(e.value)
    assert not (tmp_path / "evil").exists()


def test_refuses_hardlink_outside(tmp_path):
    with pytest.raises(LayerError, match="escapes"):
        apply(tmp_path, ("link", "h", "../../../etc/passwd"))


@pytest.mark.parametrize("kind", ["absolute", "relative"])
def test_symlink_then_write_through_stays_inside(tmp_path, kind):
    outside = tmp_path / "outside"
    outside.mkdir()
    link = str(outside) if kind == "absolute" else "../" * 12 + str(outside).lstrip("/")
    root, _ = apply(tmp_path, ("sym", "link", link), ("file", "link/file", "gotcha"))
    assert os.listdir(outside) == []  # the host is untouched
    inside = root / str(outside).lstrip("/") / "file"
    assert inside.read_text() == "gotcha"  # the link was followed as if root were "/"


def test_existing_symlink_is_replaced_not_written_through(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("original")
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(str(victim), root / "f")
    os.symlink(str(tmp_path), root / "d")
    apply(tmp_path, ("file", "f", "new"), ("file", "d/victim", "owned"))
    assert victim.read_text() == "original"
    assert not os.path.islink(root / "f") and (root / "f").read_text() == "new"
    assert (root / str(tmp_path).lstrip("/") / "victim").read_text() == "owned"


def test_invalid_whiteout_name(tmp_path):
    with pytest.raises(LayerError, match="invalid whiteout"):
        apply(tmp_path, ("file", "a/.wh..", ""))


def test_apply_layer_owners_and_devices(tmp_path):
    need_root()
    root, result = apply(tmp_path, ("dir", "dev", None), ("chr", "dev/null", (1, 3), {"mode": 0o666}),
                         ("file", "owned", "x", {"uid": 1234, "gid": 5678, "mode": 0o2755}),
                         ("sym", "lnk", "owned", {"uid": 42, "gid": 43}))
    st = os.stat(root / "dev" / "null")
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3
    o = os.stat(root / "owned")
    assert (o.st_uid, o.st_gid, stat.S_IMODE(o.st_mode)) == (1234, 5678, 0o2755)  # setgid kept
    assert (os.lstat(root / "lnk").st_uid, os.lstat(root / "lnk").st_gid) == (42, 43)
    assert result.skipped == []


def test_apply_layer_xattrs_best_effort(tmp_path):
    root, _ = apply(tmp_path, ("file", "f", "x", {"pax": {"SCHILY.xattr.user.minidocker": "yes"}}))
    try:
        assert os.getxattr(root / "f", "user.minidocker") == b"yes"
    except OSError:  # filesystem without user xattrs: applying must still have succeeded
        assert (root / "f").read_text() == "x"


def test_overlay_whiteouts(tmp_path):
    need_root()
    root, _ = apply(tmp_path, ("dir", "a", None), ("file", "a/.wh.gone", ""),
                    ("dir", "o", None), ("file", "o/.wh..wh..opq", ""), ("file", "o/new", "n"),
                    whiteouts="overlay")
    st = os.lstat(root / "a" / "gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert os.getxattr(root / "o", "trusted.overlay.opaque") == b"y"
    assert os.listdir(root / "o") == ["new"]


def test_device_nodes_need_root(tmp_path):
    root, result = apply(tmp_path, ("chr", "null", (1, 3), {"mode": 0o666}))
    if os.geteuid() == 0:
        assert stat.S_ISCHR(os.lstat(root / "null").st_mode) and result.skipped == []
    else:  # unprivileged: the node is skipped and reported, the rest of the layer applies
        assert not os.path.lexists(root / "null") and "null" in result.skipped[0]


def test_missing_busybox_is_a_clear_error(tmp_path):
    from minidocker.images import BusyboxMissing
    assert not busybox_available(str(tmp_path / "nope"))
    with pytest.raises(BusyboxMissing, match=r"busybox-static is not installed: apt-get install "
                                             r"busybox-static \(make setup does it\)"):
        build_busybox(ImageStore(str(tmp_path / "s")), busybox=str(tmp_path / "nope"))


def test_concurrent_unpack(tmp_path):
    from minidocker.images.unpack import unpack
    need_busybox()
    image = build_busybox(ImageStore(str(tmp_path / "store")))   # no snapshotter: not extracted yet
    snap = new_snapshotter("overlay", str(tmp_path / "snapshots"))
    results, errors = [], []
    barrier = threading.Barrier(4)

    def extract():
        try:
            barrier.wait()
            results.append(unpack(ImageStore(str(tmp_path / "store")), snap, image))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=extract) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and results == [image.chain_ids[0]] * 4
    assert [i.key for i in snap.list()] == [image.chain_ids[0]]  # the losers' extractions are gone
    assert sorted(os.listdir(snap.root)) == sorted(["metadata.json", ".lock", snap.stat(image.chain_ids[0]).id])


@pytest.mark.privileged
def test_layers_stack_as_overlay_lowerdirs(tmp_path):
    """The real consumer: overlayfs must honour the whiteouts the snapshots keep."""
    need_root()
    need_busybox()
    mount = need_tool("mount")
    store = snapshot_store(tmp_path)
    base = build_busybox(store)
    top = make_tar(("file", ".wh.linuxrc", ""), ("dir", "etc", None),
                   ("file", "etc/.wh..wh..opq", ""), ("file", "etc/motd", "hi\n"))
    image = add_synthetic(store, [store.content.read(base.diff_ids[0]), top], "derived")
    target = tmp_path / "merged"
    target.mkdir()
    lower = ":".join(stack(store.snapshotter, image.chain_ids[-1]))
    subprocess.run([mount, "-t", "overlay", "overlay", "-o", f"lowerdir={lower}", str(target)],
                   check=True, capture_output=True)
    try:
        assert not os.path.lexists(target / "linuxrc")
        assert os.listdir(target / "etc") == ["motd"]  # passwd and group hidden by the opaque dir
        assert os.readlink(target / "bin" / "sh") == "/bin/busybox"
    finally:
        subprocess.run(["umount", str(target)], check=True)

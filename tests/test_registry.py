"""The registry chapter's client and server against real registries on 127.0.0.1.

The same client tests run against Debian's docker-registry (distribution 2.8) and against
minidocker's own server; auth against htpasswd Basic and a token server of the tests; failures
through a proxy that corrupts, drops, redirects, or answers 503/429.
"""
from __future__ import annotations

import base64
import json
import os
import sys
import shutil
import subprocess
import time
import urllib.request

import pytest

from conftest import need_tool
from registries import (DistributionRegistry, FaultyProxy, MinidockerRegistry, TokenServer, build_image)

from minidocker.images.busybox import build_busybox, busybox_available
from minidocker.images.store import DigestMismatch, ImageNotFound, ImageStore
from minidocker.registry.auth import AuthError, Credentials, parse_challenge
from minidocker.registry.client import Registry, parse_platform
from minidocker.registry.transport import RegistryError
from minidocker.images.unpack import unpack
from minidocker.unionfs import new_snapshotter

USERS = {"alice": "wonderland"}


@pytest.fixture
def tmp(tmp_path):
    return str(tmp_path)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A store with a 3-layer image (busybox + two small layers) and its busybox base."""
    from conftest import need
    need(busybox_available(), "/bin/busybox (busybox-static)")
    store = ImageStore(str(tmp_path_factory.mktemp("src")))
    base = build_busybox(store)
    image = build_image(store, [{"etc/one": b"1" * 50_000}, {"etc/two": os.urandom(300_000)}],
                        ref="example.com/app:1", base=base)
    return store, image


def start_registry(kind: str, base: str, **kw):
    if kind == "distribution":
        need_tool("docker-registry")
        return DistributionRegistry(base, **kw).start()
    return MinidockerRegistry(base, **kw).start()


@pytest.fixture(params=["distribution", "minidocker"])
def registry(request, tmp):
    reg = start_registry(request.param, os.path.join(tmp, "reg"))
    yield reg
    reg.stop()


def blob_files(store: ImageStore) -> set[str]:
    return set(os.listdir(store.content.blob_dir))


# ---- pull and push -------------------------------------------------------------------------------
def test_push_then_pull_round_trip(registry, source, tmp):
    store, image = source
    events = []
    digest, size = Registry(registry.host).push("app", "1", store, image,
                                                progress=lambda e, d, c=0, t=0: events.append((e, d)))
    assert digest == image.manifest_digest and size == len(store.content.read(digest))
    assert {d for e, d in events if e == "pushed"} == {b["digest"] for b in image.manifest["layers"]} | {image.id}

    # A store with a snapshotter extracts each layer while it downloads (images/unpack.py).
    dest = ImageStore(os.path.join(tmp, "dest"), snapshotter=new_snapshotter("overlay", os.path.join(tmp, "snap")))
    result = Registry(registry.host).pull("app", "1", dest, tag_as=f"{registry.host}/app:1")
    assert result.digest == image.manifest_digest
    assert dest.resolve(f"{registry.host}/app:1").id == image.id
    for layer in image.manifest["layers"]:
        assert dest.content.verify(layer["digest"])
    snap = dest.snapshotter  # every layer committed under its ChainID, nothing else left behind
    assert sorted(i.key for i in snap.list()) == sorted(image.chain_ids)
    assert all(snap.stat(c).labels["diff_id"] == d for c, d in zip(image.chain_ids, image.diff_ids))
    src = new_snapshotter("overlay", os.path.join(tmp, "src-snap"))
    unpack(store, src, image)
    assert open(os.path.join(snap.fs(image.chain_ids[-1]), "etc", "two"), "rb").read() == open(
        os.path.join(src.fs(image.chain_ids[-1]), "etc", "two"), "rb").read()

    # a second pull downloads nothing; a pull by digest finds the same manifest
    again = Registry(registry.host).pull("app", image.manifest_digest, dest)
    assert again.downloaded == [] and len(again.skipped) == 4


def test_push_skips_existing_blobs_and_mounts_across_repositories(registry, source, tmp):
    store, image = source
    Registry(registry.host).push("app", "1", store, image)
    events = []
    Registry(registry.host).push("app", "2", store, image, progress=lambda e, d, c=0, t=0: events.append(e))
    assert set(events) == {"exists"}

    # an image known under the registry's repository "app" is mounted into "copy" without upload
    dest = ImageStore(os.path.join(tmp, "dest"))
    pulled = Registry(registry.host).pull("app", "1", dest, tag_as=f"{registry.host}/app:1").image
    events = []
    reg = Registry(registry.host)
    reg.push("copy", "1", dest, pulled, progress=lambda e, d, c=0, t=0: events.append(e))
    assert set(events) == {"mounted"}
    methods = [(m, u.split("?")[1] if "?" in u else "") for m, u, s in reg.transport.log if m == "POST"]
    assert all("mount=sha256:" in q and "from=app" in q for m, q in methods)


def test_chunked_upload(registry, source, tmp):
    store, image = source
    reg = Registry(registry.host)
    reg.push("chunked", "1", store, image, chunk_size=64 * 1024)
    patches = [u for m, u, s in reg.transport.log if m == "PATCH"]
    big = max(int(b["size"]) for b in image.manifest["layers"])
    assert len(patches) >= big // (64 * 1024)
    dest = ImageStore(os.path.join(tmp, "dest"))
    assert Registry(registry.host).pull("chunked", "1", dest).digest == image.manifest_digest


def test_unknown_tag_and_repository(registry, source, tmp):
    store, image = source
    Registry(registry.host).push("app", "1", store, image)
    dest = ImageStore(os.path.join(tmp, "dest"))
    with pytest.raises(RegistryError) as e:
        Registry(registry.host).pull("app", "nope", dest)
    assert e.value.status == 404 and e.value.code == "MANIFEST_UNKNOWN"
    with pytest.raises(RegistryError) as e:
        Registry(registry.host).pull("never/pushed", "1", dest)
    assert e.value.status == 404 and e.value.code in ("NAME_UNKNOWN", "MANIFEST_UNKNOWN")
    assert dest.list() == [] and blob_files(dest) == set()


def test_index_selects_this_platform_or_the_asked_one(registry, source, tmp):
    store, image = source
    arm = build_image(store, [{"arch": b"arm64"}], arch="arm64")
    reg = Registry(registry.host)
    for img, tag in ((image, "amd64"), (arm, "arm64")):
        reg.push("multi", tag, store, img)
    index = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
             "manifests": [{"mediaType": i.manifest["mediaType"], "digest": i.manifest_digest,
                            "size": len(store.content.read(i.manifest_digest)),
                            "platform": {"os": "linux", "architecture": a, **({"variant": "v8"} if a == "arm64" else {})}}
                           for i, a in ((arm, "arm64"), (image, "amd64"))]}
    r = reg.transport.request("PUT", "/v2/multi/manifests/latest", reg.scopes("multi", True),
                              {"Content-Type": index["mediaType"]}, json.dumps(index).encode(), ok=(201,))
    r.read()
    dest = ImageStore(os.path.join(tmp, "dest"))
    assert Registry(registry.host).pull("multi", "latest", dest).digest == image.manifest_digest
    assert Registry(registry.host).pull("multi", "latest", dest, platform=parse_platform("linux/arm64")
                                        ).image.architecture == "arm64"
    with pytest.raises(RegistryError, match="no matching manifest for linux/s390x"):
        Registry(registry.host).pull("multi", "latest", dest, platform=parse_platform("linux/s390x"))


# ---- the same server behaviour as distribution (spec conformance corners) ---------------------------
def test_tags_pagination_and_deletes(registry, source, tmp):
    store, image = source
    reg = Registry(registry.host)
    for tag in ("a", "b", "c"):
        reg.push("tags", tag, store, image)
    base = f"http://{registry.host}/v2/tags"
    if isinstance(registry, DistributionRegistry):  # distribution 2.8 ignores n/last (3.0 added them)
        with urllib.request.urlopen(f"{base}/tags/list") as r:
            assert sorted(json.load(r)["tags"]) == ["a", "b", "c"]
    else:
        with urllib.request.urlopen(f"{base}/tags/list?n=2") as r:
            assert json.load(r)["tags"] == ["a", "b"]
            assert 'rel="next"' in r.headers["Link"] and "last=b" in r.headers["Link"]
        with urllib.request.urlopen(f"{base}/tags/list?n=2&last=b") as r:
            assert json.load(r)["tags"] == ["c"]
    # delete the manifest by digest: every tag of it is gone
    req = urllib.request.Request(f"{base}/manifests/{image.manifest_digest}", method="DELETE")
    assert urllib.request.urlopen(req).status == 202
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{base}/manifests/a")
    assert e.value.code == 404
    layer = image.manifest["layers"][-1]["digest"]
    req = urllib.request.Request(f"{base}/blobs/{layer}", method="DELETE")
    assert urllib.request.urlopen(req).status == 202
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(urllib.request.Request(f"{base}/blobs/{layer}", method="HEAD"))
    assert e.value.code == 404


def _upload(host: str, method: str, url: str, body: bytes = b"", headers=None):
    import http.client
    c = http.client.HTTPConnection(host, timeout=10)
    c.request(method, url, body=body, headers={"Content-Type": "application/octet-stream", **(headers or {})})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, dict(r.getheaders()), data


def test_server_verifies_digests_and_references(registry):
    import hashlib
    h = registry.host
    blob = b"hello registry"
    good = "sha256:" + hashlib.sha256(blob).hexdigest()
    bad = "sha256:" + hashlib.sha256(b"something else").hexdigest()
    # closing an upload with the wrong digest is refused, with the right one accepted
    for digest, want in ((bad, 400), (good, 201)):
        status, headers, _ = _upload(h, "POST", "/v2/v/blobs/uploads/")
        assert status == 202
        status, headers, body = _upload(h, "PUT", headers["Location"] + ("&" if "?" in headers["Location"] else "?")
                                        + f"digest={digest}", blob)
        assert status == want, body
    assert b"DIGEST_INVALID" not in body and headers["Docker-Content-Digest"] == good
    # a chunk that does not start where the upload stands is refused with 416
    status, headers, _ = _upload(h, "POST", "/v2/v/blobs/uploads/")
    assert status == 202
    loc = headers["Location"]
    status, headers, _ = _upload(h, "PATCH", loc, blob[:5], {"Content-Range": "0-4"})
    assert status == 202
    status, _, _ = _upload(h, "PATCH", headers["Location"], blob[5:], {"Content-Range": "0-8"})
    if not isinstance(registry, DistributionRegistry):  # distribution 2.8 does not check Content-Range
        assert status == 416
    # a manifest naming a blob the repository does not have is refused
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": bad, "size": 14},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": good, "size": len(blob)}]}
    status, _, body = _upload(h, "PUT", "/v2/v/manifests/x", json.dumps(manifest).encode(),
                              {"Content-Type": manifest["mediaType"]})
    assert status == 400 and b"MANIFEST_BLOB_UNKNOWN" in body


def test_minidocker_server_basic_auth(source, tmp):
    need_tool("htpasswd")
    store, image = source
    with MinidockerRegistry(os.path.join(tmp, "reg"), htpasswd_users=USERS) as reg:
        with pytest.raises(AuthError, match="minidocker login"):
            Registry(reg.host).push("app", "1", store, image)
        with pytest.raises(AuthError, match="wrong username or password"):
            Registry(reg.host, Credentials("alice", "nope")).push("app", "1", store, image)
        Registry(reg.host, Credentials(**{"username": "alice", "password": "wonderland"})).push("app", "1", store, image)
        dest = ImageStore(os.path.join(tmp, "dest"))
        assert Registry(reg.host, Credentials("alice", "wonderland")).pull("app", "1", dest).digest == image.manifest_digest


# ---- auth against distribution ------------------------------------------------------------------------
def test_distribution_htpasswd(source, tmp):
    need_tool("docker-registry")
    need_tool("htpasswd")
    store, image = source
    with DistributionRegistry(os.path.join(tmp, "reg"), auth="htpasswd", users=USERS) as reg:
        t = Registry(reg.host).transport
        t.ping()
        assert t.challenge == ("basic", {"realm": "minidocker-tests"})
        with pytest.raises(AuthError, match="wrong username or password"):
            Registry(reg.host, Credentials("alice", "bad")).push("app", "1", store, image)
        Registry(reg.host, Credentials("alice", "wonderland")).push("app", "1", store, image)
        dest = ImageStore(os.path.join(tmp, "dest"))
        with pytest.raises(AuthError):
            Registry(reg.host).pull("app", "1", dest)
        assert dest.list() == []
        assert Registry(reg.host, Credentials("alice", "wonderland")).pull("app", "1", dest).digest == image.manifest_digest


def test_distribution_token_auth(source, tmp):
    need_tool("docker-registry")
    need_tool("openssl")
    store, image = source
    tokens = TokenServer(os.path.join(tmp, "tok"), USERS, expires_in=12).start()
    try:
        with DistributionRegistry(os.path.join(tmp, "reg"), auth="token", token_server=tokens) as reg:
            t = Registry(reg.host).transport
            t.ping()
            scheme, params = t.challenge
            assert scheme == "bearer" and params["realm"] == tokens.url + "/token"
            assert params["service"] == tokens.service
            # anonymous users get pull-only tokens: a push is refused by the registry
            with pytest.raises(AuthError):
                Registry(reg.host).push("app", "1", store, image)
            with pytest.raises(AuthError, match="refused the credentials of alice"):
                Registry(reg.host, Credentials("alice", "bad")).push("app", "1", store, image)

            tokens.requests.clear()
            pusher = Registry(reg.host, Credentials("alice", "wonderland"))
            pusher.push("app", "1", store, image)
            # one token for the scope, cached for every blob and the manifest
            assert [r["scope"] for r in tokens.requests] == [["repository:app:pull,push"]]
            assert all(r["user"] == "alice" for r in tokens.requests)

            dest = ImageStore(os.path.join(tmp, "dest"))
            anon = Registry(reg.host)
            assert anon.pull("app", "1", dest).digest == image.manifest_digest  # anonymous pull is allowed
            # the token expires (12 s lifetime, dropped 10 s early): the next request fetches a new one
            n = len(tokens.requests)
            time.sleep(2.2)
            anon.get_manifest("app", "1")
            assert len(tokens.requests) == n + 1
            claims = __import__("minidocker.registry.auth", fromlist=["decode_jwt"]).decode_jwt(
                anon.transport.tokens.get((params["realm"], params["service"], ("repository:app:pull",))))
            assert claims["access"] == [{"type": "repository", "name": "app", "actions": ["pull"]}]
    finally:
        tokens.stop()


def test_parse_challenge():
    assert parse_challenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                           'scope="repository:library/busybox:pull"') == (
        "bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                   "scope": "repository:library/busybox:pull"})
    assert parse_challenge('Basic realm="Registry Realm"') == ("basic", {"realm": "Registry Realm"})


# ---- failures ------------------------------------------------------------------------------------------
@pytest.fixture(params=["distribution", "minidocker"])
def upstream(request, source, tmp):
    store, image = source
    reg = start_registry(request.param, os.path.join(tmp, "reg"))
    Registry(reg.host).push("app", "1", store, image)
    yield reg
    reg.stop()


def test_corrupted_blob_is_an_error_and_nothing_is_stored(upstream, source, tmp):
    store, image = source
    proxy = FaultyProxy(upstream.host, "flip").start()
    try:
        # With a snapshotter the layers are extracted while they download: still nothing visible.
        dest = ImageStore(os.path.join(tmp, "dest"), snapshotter=new_snapshotter("overlay", os.path.join(tmp, "snap")))
        with pytest.raises(DigestMismatch, match="digest mismatch.*nothing was stored"):
            Registry(proxy.host).pull("app", "1", dest, tag_as="x/app:1")
        assert proxy.faults >= 1
        assert dest.snapshotter.list() == []  # no committed layer, no extraction left behind
        with pytest.raises(ImageNotFound):
            dest.resolve("x/app:1")
        for desc in image.manifest["layers"]:
            stored = dest.content.has(desc["digest"])
            assert not stored or dest.content.verify(desc["digest"])  # only verified blobs exist
        assert not any(f.startswith(".tmp") for f in blob_files(dest))
        assert not dest.content.has(image.manifest["layers"][-1]["digest"])
    finally:
        proxy.stop()


def test_connection_dropped_mid_blob_resumes(upstream, source, tmp):
    store, image = source
    proxy = FaultyProxy(upstream.host, "drop").start()
    try:
        dest = ImageStore(os.path.join(tmp, "dest"), snapshotter=new_snapshotter("copy", os.path.join(tmp, "snap")))
        reread = []   # layers extracted from the stream are never read back from the content store
        opened = dest.content.open
        dest.content.open = lambda d: reread.append(d) or opened(d)
        result = Registry(proxy.host).pull("app", "1", dest)
        assert image.manifest["layers"][0]["digest"] not in reread  # the bottom layer streamed
        assert result.digest == image.manifest_digest and proxy.faults == 1
        assert any(status == 206 for m, p, status in proxy.seen)  # resumed with a Range request
        assert all(dest.content.verify(d) for d in result.downloaded)
        assert sorted(i.key for i in dest.snapshotter.list()) == sorted(image.chain_ids)
        src = new_snapshotter("copy", os.path.join(tmp, "src-snap"))
        unpack(store, src, image)
        top = image.chain_ids[-1]
        assert subprocess.run(["diff", "-r", "--no-dereference", src.fs(top), dest.snapshotter.fs(top)]).returncode == 0
    finally:
        proxy.stop()


@pytest.mark.parametrize("status", ["503", "429"])
def test_retry_after_5xx_and_429(upstream, source, tmp, status):
    store, image = source
    proxy = FaultyProxy(upstream.host, status, times=2).start()
    try:
        dest = ImageStore(os.path.join(tmp, "dest"))
        started = time.monotonic()
        assert Registry(proxy.host).pull("app", "1", dest).digest == image.manifest_digest
        assert [s for m, p, s in proxy.seen].count(int(status)) == 2
        assert time.monotonic() - started >= 1.0  # Retry-After: 1 was honoured (a lower bound, not a benchmark)
    finally:
        proxy.stop()


def test_redirected_blobs_are_followed(upstream, source, tmp):
    store, image = source
    proxy = FaultyProxy(upstream.host, "redirect").start()
    try:
        dest = ImageStore(os.path.join(tmp, "dest"))
        reg = Registry(proxy.host)
        assert reg.pull("app", "1", dest).digest == image.manifest_digest
        assert any(s == 307 for m, p, s in proxy.seen)
        assert any(upstream.host in u and "/blobs/" in u and s == 200 for m, u, s in reg.transport.log)
    finally:
        proxy.stop()


def test_plain_http_only_for_insecure_registries(upstream, monkeypatch):
    from minidocker.registry.transport import is_insecure
    assert is_insecure("127.0.0.1:5000") and is_insecure("localhost:5000") and is_insecure("[::1]:5000")
    assert not is_insecure("registry.example.com")
    monkeypatch.setenv("MINIDOCKER_INSECURE_REGISTRIES", "registry.example.com:5000")
    assert is_insecure("registry.example.com:5000")
    # told the loopback registry is secure, the client insists on TLS and fails clearly
    with pytest.raises(RegistryError, match="plain HTTP is allowed only for insecure registries"):
        Registry(upstream.host, insecure=False).get_manifest("app", "1")


# ---- skopeo interop --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["distribution", "minidocker"])
def test_skopeo_pulls_what_minidocker_pushed(kind, source, tmp):
    skopeo = need_tool("skopeo")
    store, image = source
    reg = start_registry(kind, os.path.join(tmp, "reg"))
    try:
        Registry(reg.host).push("app", "1", store, image)
        out = os.path.join(tmp, "oci")
        subprocess.run([skopeo, "copy", "--src-tls-verify=false", f"docker://{reg.host}/app:1", f"oci:{out}:app"],
                       check=True, capture_output=True, timeout=60)
        index = json.load(open(os.path.join(out, "index.json")))
        assert index["manifests"][0]["digest"] != ""  # skopeo converted to OCI; check the layers arrived intact
        manifest = json.load(open(os.path.join(out, "blobs", "sha256", index["manifests"][0]["digest"][7:])))
        # skopeo may recompress layers for its layout, but the config (image id, DiffIDs) is ours
        assert manifest["config"]["digest"] == image.id
        assert len(manifest["layers"]) == len(image.manifest["layers"])
        info = json.loads(subprocess.run([skopeo, "inspect", "--tls-verify=false", f"docker://{reg.host}/app:1"],
                                         check=True, capture_output=True, timeout=60).stdout)
        assert info["Digest"] == image.manifest_digest
    finally:
        reg.stop()


@pytest.mark.parametrize("kind", ["distribution", "minidocker"])
def test_minidocker_pulls_what_skopeo_pushed(kind, source, tmp):
    skopeo = need_tool("skopeo")
    store, image = source
    reg = start_registry(kind, os.path.join(tmp, "reg"))
    try:
        # the store is an OCI image layout: skopeo reads it directly
        subprocess.run([skopeo, "copy", "--dest-tls-verify=false", f"oci:{store.root}:example.com/app:1",
                        f"docker://{reg.host}/from-skopeo:1"], check=True, capture_output=True, timeout=60)
        dest = ImageStore(os.path.join(tmp, "dest"), snapshotter=new_snapshotter("copy", os.path.join(tmp, "snap")))
        result = Registry(reg.host).pull("from-skopeo", "1", dest, tag_as=f"{reg.host}/from-skopeo:1")
        assert result.image.diff_ids == image.diff_ids
        assert os.path.exists(os.path.join(dest.snapshotter.fs(result.image.chain_ids[-1]), "etc", "two"))
    finally:
        reg.stop()


def test_tls_with_a_custom_ca_directory(source, tmp):
    need_tool("docker-registry")
    need_tool("openssl")
    store, image = source
    with DistributionRegistry(os.path.join(tmp, "reg"), tls=True) as reg:
        # without the registry's CA, verification fails (insecure=False: treat it as a remote registry)
        with pytest.raises(RegistryError, match="CERTIFICATE_VERIFY_FAILED"):
            Registry(reg.host, insecure=False, certs_d=os.path.join(tmp, "empty")).push("app", "1", store, image)
        certs_d = os.path.join(tmp, "certs.d")
        os.makedirs(os.path.join(certs_d, reg.host))
        shutil.copy(reg.cert, os.path.join(certs_d, reg.host, "ca.crt"))  # docker's certs.d layout
        client = Registry(reg.host, insecure=False, certs_d=certs_d)
        client.push("app", "1", store, image)
        assert client.transport.scheme == "https"
        dest = ImageStore(os.path.join(tmp, "dest"))
        assert Registry(reg.host, insecure=False, certs_d=certs_d).pull("app", "1", dest).digest == image.manifest_digest
        # an insecure (loopback) registry that speaks TLS is still reached: HTTP first, then HTTPS
        assert Registry(reg.host).get_manifest("app", "1")[2] == image.manifest_digest


def test_credentials_in_config_json_and_in_a_helper(tmp, monkeypatch):
    from minidocker.registry import auth
    config = os.path.join(tmp, "config.json")
    where = auth.store_credentials("127.0.0.1:5000", Credentials("alice", "s3cret"), config)
    assert where == config and os.stat(config).st_mode & 0o777 == 0o600
    saved = json.load(open(config))
    assert saved["auths"]["127.0.0.1:5000"]["auth"] == base64.b64encode(b"alice:s3cret").decode()
    assert auth.load_credentials("127.0.0.1:5000", config) == Credentials("alice", "s3cret")
    assert auth.load_credentials("docker.io", config) == Credentials()  # docker.io is under its v1 URL key
    assert auth.erase_credentials("127.0.0.1:5000", config)
    assert "127.0.0.1:5000" not in json.load(open(config))["auths"]

    # a credential helper: a real program on PATH speaking docker-credential-helpers' protocol
    bindir, secrets_file = os.path.join(tmp, "bin"), os.path.join(tmp, "helper-store.json")
    os.makedirs(bindir)
    helper = os.path.join(bindir, "docker-credential-minitest")
    with open(helper, "w") as f:
        f.write(f"""#!{sys.executable}
import json, sys
path = {secrets_file!r}
try:
    db = json.load(open(path))
except FileNotFoundError:
    db = {{}}
action, data = sys.argv[1], sys.stdin.read()
if action == "store":
    item = json.loads(data); db[item["ServerURL"]] = item
elif action == "get":
    if data.strip() not in db:
        print("credentials not found in native keychain"); sys.exit(1)
    print(json.dumps(db[data.strip()]))
elif action == "erase":
    db.pop(data.strip(), None)
json.dump(db, open(path, "w"))
""")
    os.chmod(helper, 0o755)
    monkeypatch.setenv("PATH", bindir + os.pathsep + os.environ["PATH"])
    json.dump({"credsStore": "minitest"}, open(config, "w"))
    assert auth.store_credentials("127.0.0.1:5000", Credentials("bob", "pw"), config) == "docker-credential-minitest"
    assert json.load(open(secrets_file))["127.0.0.1:5000"]["Secret"] == "pw"
    assert "pw" not in open(config).read()  # the password is with the helper, not in the file
    assert auth.load_credentials("127.0.0.1:5000", config) == Credentials("bob", "pw")
    assert auth.erase_credentials("127.0.0.1:5000", config)
    assert auth.load_credentials("127.0.0.1:5000", config) == Credentials()


def test_x_registry_auth_header_round_trip():
    creds = Credentials("alice", "wonder/land+=")
    assert Credentials.from_header(creds.to_header("h")) == creds
    assert Credentials.from_header("e30=") == Credentials()  # "{}", what docker sends when logged out
    assert Credentials.from_header(creds.to_header("h").rstrip("=")) == creds  # unpadded base64url
    with pytest.raises(AuthError):
        Credentials.from_header("not base64 json!")


def test_minidocker_server_referrers(source, tmp):
    """OCI 1.1 content discovery: an artifact whose subject is the image is listed as a referrer."""
    import hashlib
    store, image = source
    with MinidockerRegistry(os.path.join(tmp, "reg")) as reg:
        client = Registry(reg.host)
        client.push("app", "1", store, image)
        empty = b"{}"
        empty_digest = "sha256:" + hashlib.sha256(empty).hexdigest()
        status, headers, _ = _upload(reg.host, "POST", "/v2/app/blobs/uploads/")
        status, _, _ = _upload(reg.host, "PUT", headers["Location"] + f"?digest={empty_digest}", empty)
        assert status == 201
        sbom = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "artifactType": "application/vnd.example.sbom",
                "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_digest, "size": 2},
                "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_digest, "size": 2}],
                "subject": {"mediaType": image.manifest["mediaType"], "digest": image.manifest_digest,
                            "size": len(store.content.read(image.manifest_digest))}}
        body = json.dumps(sbom).encode()
        status, headers, _ = _upload(reg.host, "PUT", f"/v2/app/manifests/{'sha256:' + hashlib.sha256(body).hexdigest()}",
                                     body, {"Content-Type": sbom["mediaType"]})
        assert status == 201 and headers["OCI-Subject"] == image.manifest_digest
        with urllib.request.urlopen(f"http://{reg.host}/v2/app/referrers/{image.manifest_digest}") as r:
            index = json.load(r)
        assert [m["artifactType"] for m in index["manifests"]] == ["application/vnd.example.sbom"]
        with urllib.request.urlopen(f"http://{reg.host}/v2/app/referrers/{image.manifest_digest}"
                                    "?artifactType=application/other") as r:
            assert json.load(r)["manifests"] == [] and r.headers["OCI-Filters-Applied"] == "artifactType"


# ---- the minidocker server and the current distribution spec (issue 11, point 8) --------------------

@pytest.fixture
def mdreg(tmp):
    with MinidockerRegistry(os.path.join(tmp, "reg")) as reg:
        yield reg


def _push_blob(host: str, repo: str, blob: bytes, digest: str):
    status, headers, body = _upload(host, "POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", blob)
    return status, headers, body


def test_sha512_blobs_and_manifests(mdreg):
    import hashlib
    h = mdreg.host
    blob, config = os.urandom(3 << 20), b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    d_blob = "sha512:" + hashlib.sha512(blob).hexdigest()
    d_config = "sha512:" + hashlib.sha512(config).hexdigest()
    wrong = "sha512:" + hashlib.sha512(b"other").hexdigest()
    assert _push_blob(h, "s", blob, wrong)[0] == 400  # verified with the algorithm named
    status, headers, _ = _push_blob(h, "s", blob, d_blob)  # monolithic, 3 MiB: spooled to disk
    assert status == 201 and headers["Docker-Content-Digest"] == d_blob
    # chunked session, closed with a sha512 digest
    status, headers, _ = _upload(h, "POST", "/v2/s/blobs/uploads/")
    status, headers, _ = _upload(h, "PATCH", headers["Location"], config[:10], {"Content-Range": "0-9"})
    assert status == 202
    status, headers, _ = _upload(h, "PUT", headers["Location"] + f"?digest={d_config}", config[10:])
    assert status == 201 and headers["Docker-Content-Digest"] == d_config
    data_root = os.path.join(mdreg.base, "data")
    with open(os.path.join(data_root, "blobs", "sha512", d_blob[7:]), "rb") as f:
        assert f.read() == blob  # stored under its own algorithm
    assert [n for n in os.listdir(os.path.join(data_root, "_uploads"))] == []  # no session or spool file left
    status, headers, got = _upload(h, "GET", f"/v2/s/blobs/{d_blob}")
    assert (status, got, headers["Docker-Content-Digest"]) == (200, blob, d_blob)
    status, headers, _ = _upload(h, "HEAD", f"/v2/s/blobs/{d_config}")
    assert status == 200 and headers["Content-Length"] == str(len(config))
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d_config,
                           "size": len(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d_blob, "size": len(blob)}]}
    body = json.dumps(manifest).encode()
    m512 = "sha512:" + hashlib.sha512(body).hexdigest()
    status, headers, _ = _upload(h, "PUT", f"/v2/s/manifests/{m512}", body, {"Content-Type": manifest["mediaType"]})
    assert status == 201 and headers["Docker-Content-Digest"] == m512  # the algorithm the client used
    status, headers, got = _upload(h, "GET", f"/v2/s/manifests/{m512}")
    assert (status, got, headers["Docker-Content-Digest"]) == (200, body, m512)
    status, headers, _ = _upload(h, "PUT", "/v2/s/manifests/t", body, {"Content-Type": manifest["mediaType"]})
    assert status == 201 and headers["Docker-Content-Digest"] == "sha256:" + hashlib.sha256(body).hexdigest()
    bad = "sha512:" + hashlib.sha512(body + b" ").hexdigest()
    status, _, got = _upload(h, "PUT", f"/v2/s/manifests/{bad}", body, {"Content-Type": manifest["mediaType"]})
    assert status == 400 and b"DIGEST_INVALID" in got


def test_nondistributable_layers_with_urls_need_not_be_pushed(mdreg):
    import hashlib
    h = mdreg.host
    config = b'{"architecture":"amd64","os":"windows","rootfs":{"type":"layers","diff_ids":[]}}'
    d_config = "sha256:" + hashlib.sha256(config).hexdigest()
    assert _push_blob(h, "w", config, d_config)[0] == 201
    foreign = {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "size": 1000,
               "digest": "sha256:" + hashlib.sha256(b"never pushed").hexdigest(),
               "urls": ["https://mcr.microsoft.com/v2/windows/blobs/x"]}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": d_config,
                           "size": len(config)}, "layers": [foreign]}
    put = lambda m: _upload(h, "PUT", "/v2/w/manifests/1", json.dumps(m).encode(), {"Content-Type": m["mediaType"]})
    assert put(manifest)[0] == 201
    oci = dict(foreign, mediaType="application/vnd.oci.image.layer.nondistributable.v1.tar+gzip")
    assert put(dict(manifest, layers=[oci]))[0] == 201
    status, _, body = put(dict(manifest, layers=[{k: v for k, v in foreign.items() if k != "urls"}]))
    assert status == 400 and b"MANIFEST_BLOB_UNKNOWN" in body  # without urls it must be here
    plain = dict(foreign, mediaType="application/vnd.oci.image.layer.v1.tar+gzip")
    status, _, body = put(dict(manifest, layers=[plain]))
    assert status == 400 and b"MANIFEST_BLOB_UNKNOWN" in body  # urls only excuse non-distributable layers
    status, _, body = put(dict(manifest, layers=[dict(foreign, urls=["file:///etc/passwd"])]))
    assert status == 400 and b"MANIFEST_INVALID" in body


def test_closing_put_content_range_must_follow_the_upload(mdreg):
    import hashlib
    h = mdreg.host
    blob = b"0123456789abcdef"
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    status, headers, _ = _upload(h, "POST", "/v2/r/blobs/uploads/")
    status, headers, _ = _upload(h, "PATCH", headers["Location"], blob[:6], {"Content-Range": "0-5"})
    loc = headers["Location"]
    for rng in ("0-9", "7-16", "6-20"):  # restarts, leaves a gap, or claims more than the body
        status, headers, _ = _upload(h, "PUT", loc + f"?digest={digest}", blob[6:], {"Content-Range": rng})
        assert status == 416 and headers["Range"] == "0-5", rng
    status, headers, _ = _upload(h, "PUT", loc + f"?digest={digest}", blob[6:], {"Content-Range": "6-15"})
    assert status == 201 and headers["Docker-Content-Digest"] == digest


@pytest.mark.parametrize("digest", [
    "sha256:" + "ab" * 32,  # well-formed, not here
    "sha512:" + "cd" * 64,
    "sha384:" + "ef" * 48,  # an algorithm this registry does not store: nothing can be here either
    "sha256:abc",  # a length sha256 does not have
])
def test_unknown_well_formed_digest_is_404(mdreg, digest):
    h = mdreg.host
    for method, path in (("GET", "blobs"), ("HEAD", "blobs"), ("DELETE", "blobs"),
                         ("GET", "manifests"), ("HEAD", "manifests"), ("DELETE", "manifests")):
        status, _, body = _upload(h, method, f"/v2/repo/{path}/{digest}")
        assert status == 404, (method, path, body)
    status, _, body = _upload(h, "GET", "/v2/repo/blobs/not-a-digest!")
    assert status == 400 and b"DIGEST_INVALID" in body


def test_htpasswd_uses_bcrypt_not_crypt(tmp):
    code = r"""
import sys, bcrypt
from minidocker.registry.server import check_htpasswd
path = sys.argv[1]
h = bcrypt.hashpw(b"wonderland", bcrypt.gensalt(rounds=4)).decode()
with open(path, "w") as f:
    f.write("alice:" + "$2y$" + h[4:] + "\n")           # what htpasswd -B writes
    f.write("bob:" + h + "\n")                           # $2b$, what the library writes
    f.write("carol:$apr1$abcdefgh$0123456789abcdefghijkl\n")  # MD5: distribution refuses it too
print(check_htpasswd(path, "alice", "wonderland"), check_htpasswd(path, "alice", "nope"),
      check_htpasswd(path, "bob", "wonderland"), check_htpasswd(path, "carol", "x"),
      check_htpasswd(path, "dave", "wonderland"), "crypt" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", code, os.path.join(tmp, "htpasswd")],
                         capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))).stdout.split()
    assert out == ["True", "False", "True", "False", "False", "False"]


def test_client_verifies_a_manifest_fetched_by_sha512(mdreg, source):
    import hashlib
    from minidocker.registry.client import digest_as
    store, image = source
    client = Registry(mdreg.host)
    client.push("app", "1", store, image)
    data = store.content.read(image.manifest_digest)
    d512 = "sha512:" + hashlib.sha512(data).hexdigest()
    status, _, _ = _upload(mdreg.host, "PUT", f"/v2/app/manifests/{d512}", data,
                           {"Content-Type": image.manifest["mediaType"]})
    assert status == 201
    got, _, digest = client.get_manifest("app", d512)
    assert got == data and digest == image.manifest_digest  # verified in sha512, named in sha256 locally
    assert digest_as(d512, data) == d512 and digest_as(image.manifest_digest, data) == image.manifest_digest
    with pytest.raises(RegistryError, match="unsupported digest algorithm"):
        digest_as("md5:" + "0" * 32, data)

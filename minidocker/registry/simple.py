"""A pull client in one page: the whole conversation, without parallelism, resume or retries.

What this teaches
-----------------
client.py is what minidockerd uses; this module is the same protocol stripped to its bones, so the
steps can be read top to bottom (and it is the reference solution of ``labs/07-registry``):

1. ``GET /v2/`` -> 200, or 401 with a ``WWW-Authenticate`` challenge (:func:`parse_challenge`);
2. for ``Basic``: resend with ``Authorization: Basic base64(user:password)``; for ``Bearer``: ask the
   challenge's realm for a token (:func:`fetch_token`) and send ``Authorization: Bearer <token>``;
3. ``GET /v2/<repo>/manifests/<ref>`` with ``Accept`` listing the manifest and index types; an index
   is resolved to this platform (:func:`select_platform`) and fetched again by digest;
4. every blob (config, layers) ``GET /v2/<repo>/blobs/<digest>``; its bytes are checked against the
   digest (:func:`verify`) *before* they are stored;
5. the manifest goes into the image store under its name.

Specs: OCI distribution-spec ``spec.md`` ("Pulling manifests", "Pulling blobs"); docker's token
auth (``distribution/docs/spec/auth/token.md``); RFC 7617 (Basic).
"""
from __future__ import annotations

import base64
import hashlib
import json
import urllib.error
import urllib.parse
import urllib.request

from ..images.store import ImageStore
from .auth import parse_challenge
from .client import ACCEPT, INDEX_MEDIA_TYPES, select_platform, this_platform

__all__ = ["parse_challenge", "select_platform", "verify", "fetch_token", "pull"]


def verify(data: bytes, digest: str) -> bytes:
    """Return ``data`` if its sha256 is ``digest``; raise ValueError naming both digests otherwise."""
    algorithm, _, want = digest.partition(":")
    if algorithm != "sha256":
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise ValueError(f"digest mismatch: expected {digest}, content is sha256:{got}")
    return data


def fetch_token(challenge: dict, repo: str, username: str | None = None, password: str | None = None) -> str:
    """Bearer flow: GET realm?service=..&scope=repository:<repo>:pull -> the token."""
    query = urllib.parse.urlencode({"service": challenge.get("service", ""), "scope": f"repository:{repo}:pull"})
    req = urllib.request.Request(f"{challenge['realm']}?{query}")
    if username:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode())
    with urllib.request.urlopen(req, timeout=30) as r:
        body = json.load(r)
    return body.get("token") or body["access_token"]


def pull(host: str, repo: str, reference: str, store: ImageStore, username: str | None = None,
         password: str | None = None, tag_as: str | None = None) -> str:
    """Pull ``host/repo:reference`` (plain HTTP: for a registry on 127.0.0.1) into ``store``.
    Return the manifest digest."""
    base = f"http://{host}/v2"
    auth = None
    try:  # step 1: who are you, and how do I authenticate?
        urllib.request.urlopen(f"{base}/", timeout=30).read()
    except urllib.error.HTTPError as e:
        if e.code != 401:
            raise
        scheme, params = parse_challenge(e.headers.get("WWW-Authenticate", ""))
        if scheme == "basic":  # step 2
            auth = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        else:
            auth = "Bearer " + fetch_token(params, repo, username, password)

    def get(path: str, accept: str | None = None):
        req = urllib.request.Request(f"{base}/{repo}/{path}")
        if auth:
            req.add_header("Authorization", auth)
        if accept:
            req.add_header("Accept", accept)
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.read(), r.headers

    data, headers = get(f"manifests/{reference}", ACCEPT)  # step 3
    if reference.startswith("sha256:"):
        verify(data, reference)
    manifest = json.loads(data)
    if manifest.get("mediaType") in INDEX_MEDIA_TYPES:
        chosen = select_platform(manifest, this_platform())
        data, headers = get(f"manifests/{chosen['digest']}", ACCEPT)
        manifest = json.loads(verify(data, chosen["digest"]))
    for desc in [manifest["config"], *manifest["layers"]]:  # step 4
        if not store.content.has(desc["digest"]):
            blob, _ = get(f"blobs/{desc['digest']}")
            store.content.put(verify(blob, desc["digest"]))
    return store.add_image(data, tag_as).manifest_digest  # step 5

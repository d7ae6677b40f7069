"""Lab 07 — write a pull client: your own version of minidocker/registry/simple.py.

Five functions, top to bottom the steps of a pull (read the module docstring of
``minidocker/registry/simple.py`` and ``notebooks/07-registry.ipynb`` first -- not its code).
Use only the standard library (``urllib.request``, ``hashlib``, ``base64``, ``json``) plus the store:
``store.content.has(digest)``, ``store.content.put(data)``, ``store.add_image(manifest_bytes, ref)``.

Check your work:   minidocker lab check 07
             or:   .venv/bin/python labs/07-registry/check.py
"""
from __future__ import annotations

import base64  # noqa: F401
import hashlib  # noqa: F401
import json  # noqa: F401
import urllib.error  # noqa: F401
import urllib.parse  # noqa: F401
import urllib.request  # noqa: F401

from minidocker.images.store import ImageStore  # noqa: F401
from minidocker.registry.client import ACCEPT, INDEX_MEDIA_TYPES, this_platform  # noqa: F401

__all__ = ["parse_challenge", "select_platform", "verify", "fetch_token", "pull"]


def parse_challenge(header: str) -> tuple[str, dict]:
    """Task 1. ``'Bearer realm="https://a/token",service="reg",scope="repository:x:pull"'`` ->
    ``("bearer", {"realm": "https://a/token", "service": "reg", "scope": "repository:x:pull"})``.
    The scheme in lower case; parameter names in lower case; values without their quotes."""
    raise NotImplementedError("TODO task 1: split the scheme from its comma-separated key=\"value\" pairs")


def select_platform(index: dict, want: dict) -> dict:
    """Task 2. The first entry of ``index["manifests"]`` whose ``platform`` has the wanted ``os`` and
    ``architecture`` (and ``variant``, if ``want`` has one). None matching: raise an error whose
    text contains "no matching manifest"."""
    raise NotImplementedError("TODO task 2: pick this platform's manifest from an image index")


def verify(data: bytes, digest: str) -> bytes:
    """Task 3. Return ``data`` if sha256(data) is ``digest`` ("sha256:<hex>"); else raise ValueError
    whose text contains "digest mismatch"."""
    raise NotImplementedError("TODO task 3: hash the bytes and compare with the digest")


def fetch_token(challenge: dict, repo: str, username: str | None = None, password: str | None = None) -> str:
    """Task 4. The Bearer flow: GET ``challenge["realm"]?service=<service>&scope=repository:<repo>:pull``
    (with Basic credentials if a username is given) and return the JSON answer's ``token``
    (or ``access_token``)."""
    raise NotImplementedError("TODO task 4: ask the token server for a pull token")


def pull(host: str, repo: str, reference: str, store, username: str | None = None,
         password: str | None = None, tag_as: str | None = None) -> str:
    """Task 5. Pull ``http://host/v2/<repo>`` ``reference`` (a tag or a digest) into ``store``;
    tag it ``tag_as``; return the manifest digest. Handle no auth, Basic and Bearer (``GET /v2/``
    first), an index (pick this platform), and verify every blob before storing it."""
    raise NotImplementedError("TODO task 5: the whole conversation")

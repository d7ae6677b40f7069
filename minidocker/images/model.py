"""The image model: indexes, manifests, configs, platforms, and validation against the OCI schemas.

What this teaches
-----------------
Every image document is JSON that names other documents by digest (OCI image-spec manifest.md,
image-index.md, config.md, descriptor.md)::

    index (or docker "manifest list")  --platform-->  manifest  -->  config  (+ rootfs.diff_ids)
                                                                \\->  layers  (compressed tars)

Two vocabularies describe the same structure: OCI's and Docker's "image manifest v2, schema 2".
They differ only in media types, so one model serves both (the table below). A registry or an
archive may hand us either; we keep the bytes exactly as received, because the digest of those
bytes is the name.

Platform selection (image-index.md "platform"): an index lists one manifest per platform; we pick
``os == linux`` and our ``architecture`` (Go's GOARCH names: x86_64 is ``amd64``), and for ARM the
``variant`` (``v7``, ``v8``) where the index gives one. containerd's matcher does the same.

Validation: :func:`validate` runs the JSON schemas shipped with the spec (``schema/*.json``, copied
verbatim into this package) plus the checks upstream's Go validator adds beyond the schema
(schema/validator.go): digest encodings per algorithm, strict padded base64 ``data``, ``Env``
entries of the form ``NAME=value``, and ``format: uri`` for descriptor URLs. With these the
spec's published test vectors all pass (tests/test_images_model.py).
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import platform
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

# ---- media types --------------------------------------------------------------------------

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYOUT_HEADER = "application/vnd.oci.layout.header.v1+json"
OCI_DESCRIPTOR = "application/vnd.oci.descriptor.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
CONFIG_TYPES = (OCI_CONFIG, DOCKER_CONFIG)
LAYER_TYPES = (OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, DOCKER_LAYER, DOCKER_LAYER_GZIP,
               DOCKER_FOREIGN_LAYER)

# Which schema checks a document of each media type (Docker's types use the OCI schemas, as
# upstream's backwards-compatibility test does).
SCHEMA_FOR = {
    OCI_INDEX: "image-index-schema.json", DOCKER_LIST: "image-index-schema.json",
    OCI_MANIFEST: "image-manifest-schema.json", DOCKER_MANIFEST: "image-manifest-schema.json",
    OCI_CONFIG: "config-schema.json", DOCKER_CONFIG: "config-schema.json",
    OCI_LAYOUT_HEADER: "image-layout-schema.json", OCI_DESCRIPTOR: "content-descriptor.json",
}
SCHEMA_DIR = os.path.join(os.path.dirname(__file__), "schema")

# Python's platform.machine() -> (GOARCH, variant) as OCI platforms spell them.
_MACHINES = {"x86_64": ("amd64", ""), "amd64": ("amd64", ""), "aarch64": ("arm64", "v8"),
             "arm64": ("arm64", "v8"), "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"),
             "i386": ("386", ""), "i686": ("386", ""), "ppc64le": ("ppc64le", ""),
             "s390x": ("s390x", ""), "riscv64": ("riscv64", "")}


class InvalidDocument(ValueError):
    """A JSON document that does not follow the OCI/Docker image schemas; says what is wrong."""


class NoMatchingPlatform(LookupError):
    """An index without a manifest for this machine; the message lists what it has."""


# ---- platforms ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    @classmethod
    def from_dict(cls, d: dict | None) -> "Platform | None":
        if not d:
            return None
        return cls(d.get("os", ""), d.get("architecture", ""), d.get("variant", "") or "")


def host_platform() -> Platform:
    arch, variant = _MACHINES.get(platform.machine(), (platform.machine(), ""))
    return Platform("linux", arch, variant)


def platform_matches(have: Platform, want: Platform) -> bool:
    """Same os and architecture; the variant matters only if both name one (arm64's ``v8`` is
    usually left out: containerd normalises a missing arm64 variant to v8)."""
    if have.os != want.os or have.architecture != want.architecture:
        return False
    return not (have.variant and want.variant) or have.variant == want.variant


def select_manifest(index: dict, want: Platform | None = None) -> dict:
    """The manifest descriptor of ``index`` for ``want`` (default: this machine).

    An exact variant match beats a descriptor without a variant; entries without a platform are
    attestations or artifacts (docker's ``unknown/unknown``) and never chosen.
    """
    want = want or host_platform()
    candidates = []
    for desc in index.get("manifests") or []:
        have = Platform.from_dict(desc.get("platform"))
        if desc.get("mediaType") not in MANIFEST_TYPES + INDEX_TYPES or have is None:
            continue
        if platform_matches(have, want):
            candidates.append((have.variant != want.variant, desc))
    if not candidates:
        offered = sorted({str(Platform.from_dict(d.get("platform")))
                          for d in index.get("manifests") or [] if d.get("platform")})
        raise NoMatchingPlatform(f"no matching manifest for {want} in the manifest list entries "
                                 f"(it has: {', '.join(offered) or 'none'})")
    return min(candidates, key=lambda c: c[0])[1]


# ---- reading documents ------------------------------------------------------------------------


def media_type_of(doc: dict, fallback: str | None = None) -> str:
    """A document's media type: its own ``mediaType``, else guessed from its shape (an OCI
    manifest may omit the field; the descriptor that pointed at it says what it is)."""
    if doc.get("mediaType"):
        return doc["mediaType"]
    if fallback:
        return fallback
    if "manifests" in doc:
        return OCI_INDEX
    if "config" in doc and "layers" in doc:
        return OCI_MANIFEST
    if "rootfs" in doc:
        return OCI_CONFIG
    raise InvalidDocument("cannot tell what kind of image document this is (no mediaType)")


def parse(data: bytes, what: str = "document") -> dict:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidDocument(f"{what} is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise InvalidDocument(f"{what} is not a JSON object")
    return obj


def exec_config(config: dict) -> dict:
    """The run-time defaults of an image config (config.md "config"), with absent fields filled in:
    Env, Cmd, Entrypoint, WorkingDir, User, ExposedPorts, Volumes, Labels, StopSignal."""
    c = config.get("config") or {}
    return {"Env": list(c.get("Env") or []), "Cmd": c.get("Cmd"), "Entrypoint": c.get("Entrypoint"),
            "WorkingDir": c.get("WorkingDir") or "", "User": c.get("User") or "",
            "ExposedPorts": dict(c.get("ExposedPorts") or {}), "Volumes": dict(c.get("Volumes") or {}),
            "Labels": dict(c.get("Labels") or {}), "StopSignal": c.get("StopSignal") or ""}


def history(config: dict) -> list[dict]:
    """config.md "history", oldest first; ``empty_layer`` entries made no layer."""
    return [h for h in config.get("history") or [] if isinstance(h, dict)]


# ---- validation ---------------------------------------------------------------------------------

_ENV_RE = re.compile(r"^[^=]+=.*$", re.S)
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_ENCODED = {"sha256": re.compile(r"^[a-f0-9]{64}$"), "sha512": re.compile(r"^[a-f0-9]{128}$")}
_URI_CHARS = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*$")
_validators: dict = {}


def _is_uri(value) -> bool:
    """RFC 3986 absolute URI (what ``format: uri`` means in draft 4)."""
    if not isinstance(value, str) or not _URI_CHARS.match(value):
        return False
    try:
        urlsplit(value)
    except ValueError:
        return False
    return not re.search(r"%(?![0-9A-Fa-f]{2})", value)


def _validator(schema_file: str):
    """A Draft-4 validator whose ``$ref``s resolve to the files beside it (by last path part)."""
    if schema_file not in _validators:
        import jsonschema  # the daemon needs it; the CLI never imports this module
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT4

        def retrieve(uri: str):
            with open(os.path.join(SCHEMA_DIR, os.path.basename(urlsplit(uri).path) or uri)) as f:
                return Resource.from_contents(json.load(f), default_specification=DRAFT4)

        with open(os.path.join(SCHEMA_DIR, schema_file)) as f:
            schema = json.load(f)
        checker = jsonschema.FormatChecker()
        checker.checks("uri")(_is_uri)
        _validators[schema_file] = jsonschema.Draft4Validator(
            schema, registry=Registry(retrieve=retrieve), format_checker=checker)
    return _validators[schema_file]


def _descriptors(doc: dict, media_type: str) -> list[dict]:
    if media_type == OCI_DESCRIPTOR:
        return [doc]
    out = list(doc.get("manifests") or []) + list(doc.get("layers") or [])
    for key in ("config", "subject"):
        if isinstance(doc.get(key), dict):
            out.append(doc[key])
    return [d for d in out if isinstance(d, dict)]


def _extra_checks(doc: dict, media_type: str) -> list[str]:
    """What upstream's Go validator checks beyond the schema."""
    problems = []
    for desc in _descriptors(doc, media_type):
        digest = desc.get("digest")
        if isinstance(digest, str) and _DIGEST_RE.match(digest):
            algorithm, encoded = digest.split(":", 1)
            if algorithm in _ENCODED and not _ENCODED[algorithm].match(encoded):
                problems.append(f"digest {digest!r}: a {algorithm} digest needs "
                                f"{64 if algorithm == 'sha256' else 128} lowercase hex characters")
        data = desc.get("data")
        if isinstance(data, str):
            try:
                base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                problems.append(f"descriptor data is not padded standard base64: {data[:40]!r}")
    if media_type in CONFIG_TYPES:
        for env in (doc.get("config") or {}).get("Env") or []:
            if isinstance(env, str) and not _ENV_RE.match(env):
                problems.append(f"config.Env entry {env!r} is not NAME=value")
    return problems


def problems(doc, media_type: str) -> list[str]:
    """Everything wrong with ``doc`` as a ``media_type`` document (empty list: valid)."""
    schema = SCHEMA_FOR.get(media_type)
    if schema is None:
        raise InvalidDocument(f"no schema for media type {media_type!r}")
    found = []
    for e in _validator(schema).iter_errors(doc):
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        found.append(f"{where}: {e.message}")
    if isinstance(doc, dict) and not found:
        found += _extra_checks(doc, media_type)
    return found


def validate(doc, media_type: str | None = None, what: str = "document") -> dict:
    """Raise :class:`InvalidDocument` naming every problem; return ``doc`` if it is valid.
    ``doc`` may be bytes (parsed first) or a parsed object."""
    if isinstance(doc, (bytes, str)):
        doc = parse(doc.encode() if isinstance(doc, str) else doc, what)
    media_type = media_type or media_type_of(doc)
    found = problems(doc, media_type)
    if found:
        raise InvalidDocument(f"{what} is not a valid {media_type}: " + "; ".join(found[:5]))
    return doc


__all__ = [name for name in dir() if name.isupper() and not name.startswith("_")] + [
    "InvalidDocument", "NoMatchingPlatform", "Platform", "exec_config", "history", "host_platform",
    "media_type_of", "parse", "platform_matches", "problems", "select_manifest", "validate"]

"""Image references: how ``busybox`` becomes ``docker.io/library/busybox:latest``.

What this teaches
-----------------
A *reference* names an image: ``[domain/]path[:tag][@digest]``. Docker normalises the short names
people type into one canonical form, and that canonical form is what the image store records as a
tag (the ``org.opencontainers.image.ref.name`` annotation of index.json, see images/store.py):

    busybox                       -> docker.io/library/busybox:latest
    alice/tool:1.0                -> docker.io/alice/tool:1.0
    localhost/x                   -> localhost/x:latest
    host:5000/a/b:tag@sha256:...  -> host:5000/a/b:tag@sha256:...

The *familiar* form is the reverse: drop ``docker.io/`` and ``library/`` again (``busybox:latest``).
Docker prints familiar forms (``docker images``, "No such image: busybox:latest").

Grammar followed (github.com/distribution/reference, reference.go and normalize.go)::

    reference       := name [ ":" tag ] [ "@" digest ]
    name            := [domain '/'] path-component ['/' path-component]*
    domain          := host [':' port-number]
    host            := domain-name | '[' IPv6address ']'
    domain-name     := domain-component ['.' domain-component]*
    domain-component:= /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
    path-component  := /[a-z0-9]+/ [separator /[a-z0-9]+/]*
    separator       := /[_.]|__|[-]+/
    tag             := /[\\w][\\w.-]{0,127}/
    digest          := algorithm ":" encoded      (OCI image-spec descriptor.md "Digests")

Normalisation rule (splitDockerDomain): the first component is a registry domain only if it
contains a "." or a ":" or is exactly "localhost"; otherwise the registry is docker.io, and a
one-component docker.io path gets ``library/`` in front. A name without tag and digest gets the tag
``latest``. The whole name (domain/path) must be at most 255 characters.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
)
_PATH_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_HEX64_RE = re.compile(r"[a-f0-9]{64}")
# Registered algorithms and the exact shape of their encoded part (descriptor.md "Registered Algorithms").
_DIGEST_ENCODED = {"sha256": re.compile(r"[a-f0-9]{64}"), "sha512": re.compile(r"[a-f0-9]{128}")}


class InvalidReference(ValueError):
    """A string that is not a valid image reference. The message says what is wrong."""


def _invalid(problem: str, s: str) -> InvalidReference:
    return InvalidReference(f'invalid reference format: {problem}: "{s}"')


@dataclass(frozen=True)
class Reference:
    """A parsed, normalised image reference. ``tag`` is None only when a digest pins the image."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """``docker.io/library/busybox``: the name without tag and digest."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """``busybox``: the repository as docker prints it."""
        if self.domain != DEFAULT_DOMAIN:
            return self.repository
        path = self.path
        rest = path[len(OFFICIAL_REPO_PREFIX):]
        if path.startswith(OFFICIAL_REPO_PREFIX) and "/" not in rest:
            return rest
        return path

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def familiar(self) -> str:
        """``busybox:latest``: docker's short form (no docker.io/, no library/)."""
        return self.familiar_name + self._suffix()

    def __str__(self) -> str:
        return self.repository + self._suffix()


def validate_digest(digest: str, original: str | None = None) -> str:
    """Check a digest string against the OCI grammar and the registered algorithms' lengths."""
    shown = digest if original is None else original
    if not _DIGEST_RE.fullmatch(digest):
        raise _invalid("invalid digest format", shown)
    algorithm, encoded = digest.split(":", 1)
    pattern = _DIGEST_ENCODED.get(algorithm)
    if pattern is None:
        raise _invalid(f"unsupported digest algorithm {algorithm!r}", shown)
    if not pattern.fullmatch(encoded):
        raise _invalid(f"invalid {algorithm} digest (want lowercase hex of the right length)", shown)
    return digest


def _split_digest(s: str) -> tuple[str, str | None]:
    if "@" not in s:
        return s, None
    name, digest = s.split("@", 1)
    return name, validate_digest(digest, s)


def _split_tag(s: str, original: str) -> tuple[str, str | None]:
    colon = s.rfind(":")
    if colon <= s.rfind("/"):  # a colon before the last "/" is a port, not a tag
        return s, None
    name, tag = s[:colon], s[colon + 1:]
    if not _TAG_RE.fullmatch(tag):
        raise _invalid("invalid tag format (want [A-Za-z0-9_][A-Za-z0-9_.-]{0,127})", original)
    return name, tag


def _split_domain(name: str) -> tuple[str, str]:
    """docker's splitDockerDomain: is the first component a registry host or part of the path?"""
    slash = name.find("/")
    first = name[:slash]
    if slash == -1 or (not any(c in first for c in ".:") and first != "localhost"
                       and first.lower() == first):
        domain, path = DEFAULT_DOMAIN, name
    else:
        domain, path = first, name[slash + 1:]
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_REPO_PREFIX + path
    return domain, path


def _check_path(path: str, original: str) -> None:
    if path.lower() != path:
        raise _invalid("repository name must be lowercase", original)
    for component in path.split("/"):
        if not component:
            raise _invalid("repository name has an empty path component", original)
        if not _PATH_COMPONENT_RE.fullmatch(component):
            raise _invalid(
                f"invalid repository name component {component!r} (want lowercase letters and "
                "digits joined by '.', '_', '__' or '-')", original)


def parse_reference(s: str) -> Reference:
    """Parse and normalise ``s`` the way ``docker pull``/``docker run`` do.

    >>> str(parse_reference("busybox"))
    'docker.io/library/busybox:latest'
    """
    if not isinstance(s, str) or not s:
        raise _invalid("repository name must have at least one component", s or "")
    if _HEX64_RE.fullmatch(s):
        raise _invalid("repository name cannot be a 64-character hex string (that is an image id)", s)
    rest, digest = _split_digest(s)
    name, tag = _split_tag(rest, s)
    if not name:
        raise _invalid("repository name must have at least one component", s)
    domain, path = _split_domain(name)
    if not _DOMAIN_RE.fullmatch(domain):
        raise _invalid(f"invalid registry host {domain!r}", s)
    _check_path(path, s)
    if len(domain) + 1 + len(path) > NAME_TOTAL_LENGTH_MAX:
        raise _invalid(f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters", s)
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(domain=domain, path=path, tag=tag, digest=digest)


def normalize(s: str) -> str:
    """``busybox`` -> ``docker.io/library/busybox:latest`` (the form stored in index.json)."""
    return str(parse_reference(s))


def familiar(s: str) -> str:
    """``docker.io/library/busybox:latest`` -> ``busybox:latest``; a string that is not a valid
    reference (a name stored by an older version) is given back unchanged, for display."""
    try:
        return parse_reference(s).familiar()
    except InvalidReference:
        return s

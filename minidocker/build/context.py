"""The build context: a tar of a directory, filtered by ``.dockerignore``; COPY's sources and checksums.

What this teaches
-----------------
``docker build DIR`` does not give the daemon a path: the client tars DIR (minus what
``.dockerignore`` excludes) and streams it as the body of ``POST /build``. The daemon unpacks
it into a scratch directory, and COPY/ADD read from there. ``.dockerignore`` (Dockerfile
reference, ".dockerignore file"; moby's patternmatcher) has one pattern per line: ``#``
comments, paths cleaned and relative to the context root, Go ``filepath.Match`` wildcards
(``*`` ``?`` ``[...]``) plus ``**`` for any number of directories, ``!`` for exceptions; the
*last* matching line decides, and a pattern that matches a directory excludes what is in it.

The classic builder's cache key for COPY/ADD is the instruction plus a checksum of the
*content* it copies (names, modes, bytes), not of mtimes: touching a file does not bust the
cache, editing it does. :func:`checksum` computes one per source.
"""
from __future__ import annotations

import glob
import hashlib
import io
import os
import posixpath
import re
import stat
import tarfile


class ContextError(ValueError):
    pass


# ---- .dockerignore ----------------------------------------------------------------------------------

def _clean(pattern: str) -> str:
    p = posixpath.normpath(pattern.strip().lstrip("/")) if pattern.strip("/ ") else "."
    return p


def _regex(pattern: str) -> re.Pattern:
    """Go's filepath.Match syntax with ``**`` (moby patternmatcher), as an anchored regex."""
    out, i = "^", 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                i += 2
                if pattern.startswith("/", i):       # "**/" : zero or more directories
                    i += 1
                    out += "(.*/)?"
                else:
                    out += ".*"
                continue
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise ContextError(f"syntax error in pattern: {pattern}")
            body = pattern[i + 1:end]
            out += "[" + ("^" + body[1:] if body.startswith("^") else body) + "]"
            i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + "$")


class DockerIgnore:
    """Patterns from a .dockerignore; :meth:`excluded` applies them to a context-relative path."""

    def __init__(self, text: str = ""):
        self.rules: list[tuple[bool, re.Pattern, str]] = []   # (exception?, regex, source)
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            if negate:
                line = line[1:].strip()
            cleaned = _clean(line)
            self.rules.append((negate, _regex(cleaned), cleaned))

    @classmethod
    def from_dir(cls, root: str) -> "DockerIgnore":
        try:
            with open(os.path.join(root, ".dockerignore"), encoding="utf-8") as f:
                return cls(f.read())
        except FileNotFoundError:
            return cls()

    def excluded(self, rel: str) -> bool:
        rel = posixpath.normpath(rel.lstrip("/"))
        parents = [rel]
        while "/" in parents[-1]:
            parents.append(parents[-1].rsplit("/", 1)[0])
        result = False
        for negate, rx, _ in self.rules:
            # A pattern matches the path itself or one of its parent directories.
            if any(rx.match(p) for p in parents):
                result = not negate
        return result

    def may_hold_exceptions(self, rel_dir: str) -> bool:
        """An excluded directory is still walked if an exception might re-include something in it."""
        return any(negate and (src.startswith(rel_dir + "/") or "*" in src) for negate, _, src in self.rules)


def walk(root: str, ignore: DockerIgnore | None = None, keep=()) -> list[str]:
    """Context-relative paths to send (directories before their contents), sorted."""
    ignore = ignore or DockerIgnore.from_dir(root)
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir
        kept_dirs = []
        for d in sorted(dirnames):
            rel = posixpath.join(rel_dir, d) if rel_dir else d
            excluded = ignore.excluded(rel)
            if not excluded:
                out.append(rel)
            if not excluded or ignore.may_hold_exceptions(rel):
                kept_dirs.append(d)
        dirnames[:] = kept_dirs
        for name in sorted(filenames):
            rel = posixpath.join(rel_dir, name) if rel_dir else name
            if rel in keep or not ignore.excluded(rel):
                out.append(rel)
    return sorted(set(out))


def write_tar(root: str, out, *, dockerfile: tuple[str, bytes] | None = None,
              ignore: DockerIgnore | None = None) -> None:
    """The context as the docker CLI sends it: uid/gid 0, paths relative, .dockerignore applied
    (the Dockerfile and .dockerignore always go). ``dockerfile`` = (name, bytes) adds a Dockerfile
    from elsewhere (``-f`` outside the context, or stdin) under ``name``; ``root`` None sends only it."""
    keep = {".dockerignore", "Dockerfile"}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for rel in (walk(root, ignore, keep) if root is not None else []):
            ti = tar.gettarinfo(os.path.join(root, rel), arcname=rel)
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            if ti.isreg():
                with open(os.path.join(root, rel), "rb") as f:
                    tar.addfile(ti, f)
            else:
                tar.addfile(ti)
        if dockerfile is not None:
            name, data = dockerfile
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o644
            tar.addfile(ti, io.BytesIO(data))


def extract(stream, dest: str) -> None:
    """Unpack a context tar (any compression) into ``dest``, refusing names that leave it
    (tarfile's ``data`` filter: no absolute paths, no ``..``, no links out, no device nodes)."""
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                tar.extract(member, dest, filter="data")
    except (tarfile.TarError, EOFError) as e:
        raise ContextError(f"the build context is not a valid tar archive: {e}")
    ignore = DockerIgnore.from_dir(dest)
    if ignore.rules:     # what a raw API client sent beyond .dockerignore is not part of the context
        for rel in reversed(sorted(_all(dest))):
            if rel not in (".dockerignore",) and ignore.excluded(rel) and not os.path.basename(rel).startswith("Dockerfile"):
                p = os.path.join(dest, rel)
                if os.path.isdir(p) and not os.path.islink(p):
                    if not os.listdir(p):
                        os.rmdir(p)
                else:
                    os.unlink(p)


def _all(root: str) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            out.append(os.path.relpath(os.path.join(dirpath, n), root))
    return out


# ---- COPY sources -----------------------------------------------------------------------------------

def resolve_sources(root: str, patterns: list[str]) -> list[str]:
    """Context paths named by COPY's sources (wildcards as filepath.Match), in order; an error
    naming the first one that matches nothing (docker's wording)."""
    out: list[str] = []
    for pat in patterns:
        rel = posixpath.normpath("/" + pat).lstrip("/") or "."
        if glob.has_magic(rel):
            found = sorted(os.path.relpath(p, root) for p in glob.glob(os.path.join(root, rel))
                           if _inside(root, p))
            if not found:
                raise ContextError(f"COPY failed: no source files were specified"
                                   if not out else f"no files matching {pat}")
            out.extend(found)
        else:
            full = os.path.join(root, rel)
            if not _inside(root, full) or not os.path.lexists(full):
                raise ContextError(f'failed to compute cache key: "/{rel}" not found: not found')
            out.append(rel)
    return out


def _inside(root: str, path: str) -> bool:
    real, base = os.path.realpath(path), os.path.realpath(root)
    return real == base or real.startswith(base + "/")


def checksum(root: str, rel: str) -> str:
    """Content checksum of a source file or tree: relative names, types, modes, link targets and
    bytes (no mtimes, no owners: the classic builder's rule)."""
    h = hashlib.sha256()
    base = os.path.join(root, rel)
    paths = [base]
    if os.path.isdir(base) and not os.path.islink(base):
        paths += sorted(os.path.join(d, n) for d, ds, fs in os.walk(base) for n in ds + fs)
    for p in paths:
        st = os.lstat(p)
        h.update(f"{os.path.relpath(p, base)}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode):o}\0".encode())
        if stat.S_ISLNK(st.st_mode):
            h.update(os.readlink(p).encode())
        elif stat.S_ISREG(st.st_mode):
            with open(p, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
        h.update(b"\0")
    return "sha256:" + h.hexdigest()

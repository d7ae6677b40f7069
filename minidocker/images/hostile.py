"""A corpus of hostile layer archives: what a layer applier must refuse or contain.

What this teaches
-----------------
A layer is a tar from the network, and tar can say anything: names with ``..``, absolute names,
symlinks that point at the host and then a file *through* the symlink, hardlinks to
``/etc/shadow``, loops, names longer than the kernel allows, the same name twice, headers that lie
about sizes, streams cut short. Each case here builds such an archive and says what a safe
applier (layers.py) must do with it:

* ``refused``: raise an error whose message matches ``match`` (and name the member);
* ``contained``: succeed, but every write lands inside the target (``check`` looks inside it).

In both cases nothing outside the target may change. ``host`` is a directory beside the target
that plays the host: cases aim at it by its absolute path, as an attack would aim at ``/etc``.
Used by tests/test_layers_hostile.py and by lab 06's checker.
"""
from __future__ import annotations

import gzip
import io
import os
import tarfile
from dataclasses import dataclass
from typing import Callable


@dataclass
class Case:
    name: str
    build: Callable[[str], bytes]  # host dir -> layer bytes
    expect: str  # "refused" or "contained"
    match: str = ""  # regex the error message must match (refused)
    check: Callable[[str, str], bool] | None = None  # (target, host) -> ok (contained)
    root_only: bool = False


def _tar(*entries, fmt=tarfile.PAX_FORMAT) -> bytes:
    """entries: (kind, name, arg[, {attrs}]) with kind file/dir/sym/link/chr."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for kind, name, arg, *rest in entries:
            attrs = rest[0] if rest else {}
            ti = tarfile.TarInfo(name)
            ti.mtime, ti.mode = 1_000_000_000, attrs.get("mode", 0o755 if kind == "dir" else 0o644)
            ti.pax_headers = attrs.get("pax", {})
            data = None
            if kind == "file":
                data = arg.encode() if isinstance(arg, str) else arg
                ti.size = len(data)
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, arg
            elif kind == "link":
                ti.type, ti.linkname = tarfile.LNKTYPE, arg
            elif kind == "chr":
                ti.type, (ti.devmajor, ti.devminor) = tarfile.CHRTYPE, arg
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _exists(*parts):
    return lambda target, host: os.path.lexists(os.path.join(target, *parts))


def _read(content, *parts):
    def check(target, host):
        p = os.path.join(target, *parts)
        return os.path.isfile(p) and not os.path.islink(p) and open(p).read() == content
    return check


def _lying_size() -> bytes:
    """A header that announces 4096 bytes of data followed by 10 bytes and the end."""
    raw = bytearray(_tar(("file", "big", "0123456789")))
    header = tarfile.TarInfo("big")
    header.size, header.mtime, header.mode = 4096, 1_000_000_000, 0o644
    lie = header.tobuf(tarfile.USTAR_FORMAT)
    return bytes(lie) + b"0123456789"


def _bad_checksum() -> bytes:
    raw = bytearray(_tar(("file", "f", "data"), fmt=tarfile.USTAR_FORMAT))
    raw[148:156] = b"0000000\0"  # the header checksum field
    return bytes(raw)


def _truncated_gzip() -> bytes:
    data = gzip.compress(_tar(("file", "f", "x" * 100_000)), mtime=0)
    return data[: len(data) // 2]


def _huge_name() -> bytes:
    return _tar(("file", "a" * 300, "x"))


def _deep_path() -> bytes:
    return _tar(("file", "/".join(["d" * 200] * 30), "x"))


CORPUS: list[Case] = [
    Case("dotdot traversal", lambda h: _tar(("file", "../escaped", "pwned")), "refused",
         r"escapes the target"),
    Case("nested dotdot traversal", lambda h: _tar(("file", "a/b/../../../escaped", "pwned")),
         "refused", r"escapes the target"),
    Case("dotdot via pax path header",
         lambda h: _tar(("file", "innocent", "pwned", {"pax": {"path": "../../escaped"}})),
         "refused", r"escapes the target"),
    Case("GNU long name with dotdot", lambda h: _tar(("file", "../" * 40 + "escaped", "pwned"),
                                                     fmt=tarfile.GNU_FORMAT),
         "refused", r"escapes the target"),
    Case("absolute path into the host dir", lambda h: _tar(("file", h + "/abs", "pwned")),
         "contained", check=lambda t, h: _read("pwned", h.lstrip("/"), "abs")(t, h)),
    Case("absolute symlink to host then file through it",
         lambda h: _tar(("sym", "link", h), ("file", "link/through-abs", "pwned")),
         "contained", check=lambda t, h: _read("pwned", h.lstrip("/"), "through-abs")(t, h)),
    Case("relative symlink climbing out then file through it",
         lambda h: _tar(("sym", "up", "../../../../../../../.." + h),
                        ("file", "up/through-rel", "pwned")),
         "contained", check=lambda t, h: _read("pwned", h.lstrip("/"), "through-rel")(t, h)),
    Case("symlink to / then dotdot through it", lambda h: _tar(("sym", "r", "/"),
                                                              ("file", "r/../../escaped", "pwned")),
         "refused", r"escapes the target"),
    Case("symlink chain to host", lambda h: _tar(("sym", "a", "b"), ("sym", "b", "c"),
                                                 ("sym", "c", h), ("file", "a/chained", "pwned")),
         "contained", check=lambda t, h: _read("pwned", h.lstrip("/"), "chained")(t, h)),
    Case("hardlink to /etc/shadow", lambda h: _tar(("link", "shadow", "/etc/shadow")), "refused",
         r"hardlink target '/etc/shadow' does not exist"),
    Case("hardlink to a host file by absolute path",
         lambda h: _tar(("link", "secret", h + "/secret")), "refused", r"does not exist"),
    Case("hardlink with dotdot", lambda h: _tar(("link", "pw", "../../../../etc/passwd")),
         "refused", r"escapes the target"),
    Case("hardlink through a symlink to the host",
         lambda h: _tar(("sym", "hostdir", h), ("link", "stolen", "hostdir/secret")),
         "refused", r"does not exist"),
    Case("symlink loop", lambda h: _tar(("sym", "a", "b"), ("sym", "b", "a"), ("file", "a/x", "x")),
         "refused", r"too many levels of symbolic links"),
    Case("self-referencing symlink", lambda h: _tar(("sym", "self", "self"), ("file", "self/x", "x")),
         "refused", r"too many levels of symbolic links"),
    Case("name component too long", lambda h: _huge_name(), "refused", r"File name too long"),
    Case("path deeper than PATH_MAX (walked with openat, so it stays inside)",
         lambda h: _deep_path(), "contained", check=lambda t, h: os.path.isdir(os.path.join(t, "d" * 200))),
    Case("duplicate entries: last one wins",
         lambda h: _tar(("file", "dup", "first"), ("file", "dup", "second")),
         "contained", check=_read("second", "dup")),
    Case("duplicate: symlink to host then a regular file of the same name",
         lambda h: _tar(("sym", "x", h + "/secret"), ("file", "x", "replaced")),
         "contained", check=_read("replaced", "x")),
    Case("existing symlink is replaced, never written through",
         lambda h: _tar(("sym", "y", h + "/secret"), ("sym", "y", "elsewhere")),
         "contained", check=lambda t, h: os.readlink(os.path.join(t, "y")) == "elsewhere"),
    Case("directory replaced by a symlink to host, then a file below it",
         lambda h: _tar(("dir", "d", None), ("sym", "d", h), ("file", "d/below", "pwned")),
         "contained", check=lambda t, h: _read("pwned", h.lstrip("/"), "below")(t, h)),
    Case("truncated gzip", lambda h: _truncated_gzip(), "refused",
         r"corrupt gzip layer stream|not a valid layer tar|Compressed file ended"),
    Case("lying size header", lambda h: _lying_size(), "refused",
         r"unexpected end of data|not a valid layer tar|corrupt"),
    Case("bad header checksum", lambda h: _bad_checksum(), "refused", r"not a valid layer tar"),
    Case("not a tar at all", lambda h: b"MZ" + os.urandom(2000), "refused",
         r"not a valid layer tar"),
    Case("whiteout of the parent directory", lambda h: _tar(("file", "a/.wh...", "")), "refused",
         r"invalid whiteout name"),
    Case("whiteout through a symlink to the host",
         lambda h: _tar(("sym", "hd", h), ("file", "hd/.wh.secret", "")),
         "contained", check=lambda t, h: os.path.isdir(os.path.join(t, h.lstrip("/")))),
    Case("hardlink to a directory", lambda h: _tar(("dir", "dd", None), ("link", "hl", "dd")),
         "refused", r"hardlink target 'dd' is a directory"),
    Case("device node (root only), kept inside",
         lambda h: _tar(("chr", "dev/mem-lookalike", (1, 3))), "contained",
         check=lambda t, h: os.path.exists(os.path.join(t, "dev", "mem-lookalike")), root_only=True),
    Case("setuid binary keeps its bit, inside",
         lambda h: _tar(("file", "bin/suid", "#!", {"mode": 0o4755})), "contained",
         check=lambda t, h: os.stat(os.path.join(t, "bin", "suid")).st_mode & 0o7777 == 0o4755),
]


def make_host(base: str) -> str:
    """A directory that plays the host: a secret file the corpus aims at."""
    host = os.path.join(base, "host")
    os.makedirs(host, exist_ok=True)
    with open(os.path.join(host, "secret"), "w") as f:
        f.write("host secret\n")
    return host


def fingerprint(path: str) -> dict:
    """Every entry below ``path`` with type, mode, size, mtime and content: to prove no change."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            content = None
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    content = f.read()
            out[os.path.relpath(p, path)] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_nlink,
                                             content)
    return out


__all__ = ["CORPUS", "Case", "fingerprint", "make_host"]

"""Checker for lab 12 (volumes): what a user types for ``-v`` becomes mount points, then OCI
``mounts`` entries. Pure functions: the checks compare your results with docker's rules (messages,
order, options), written out here, not with the reference's output.

    .venv/bin/python labs/12-volumes/check.py               # checks skeleton.py
    .venv/bin/python labs/12-volumes/check.py --reference   # checks minidocker.volumes.spec
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parents[1]) not in sys.path:
    sys.path.insert(0, str(HERE.parents[1]))

from minidocker.labs import expect, expect_raises, run_checks  # noqa: E402
from minidocker.volumes.spec import MountError, MountPoint  # noqa: E402

REFERENCE = "minidocker.volumes.spec"
NEEDS_ROOT = None


def _fields(p: MountPoint) -> tuple:
    return (p.type, p.source, p.destination, p.rw)


def check_named(m) -> str:
    expect('parse_bind("data:/var/lib/db")', _fields(m.parse_bind("data:/var/lib/db")),
           ("volume", "data", "/var/lib/db", True))
    return "a name is a volume"


def check_bind_ro(m) -> str:
    expect('parse_bind("/srv/www:/usr/share/www:ro")', _fields(m.parse_bind("/srv/www:/usr/share/www:ro")),
           ("bind", "/srv/www", "/usr/share/www", False))
    expect('parse_bind("/srv:/srv:rw,z") (z is accepted)', _fields(m.parse_bind("/srv:/srv:rw,z")),
           ("bind", "/srv", "/srv", True))
    return "an absolute source is a bind; ro/rw"


def check_anonymous(m) -> str:
    expect('parse_bind("/cache")', _fields(m.parse_bind("/cache")), ("volume", "", "/cache", True))
    return "a lone path is an anonymous volume"


def check_errors(m) -> str:
    expect_raises('parse_bind("data:rel")', lambda: m.parse_bind("data:rel"), MountError,
                  saying="mount path must be absolute")
    expect_raises('parse_bind("data:/d:bogus")', lambda: m.parse_bind("data:/d:bogus"), MountError,
                  saying="invalid mode: bogus")
    expect_raises('parse_bind("a:b:c:d")', lambda: m.parse_bind("a:b:c:d"), MountError,
                  saying="invalid volume specification")
    return "relative target, bad mode, too many parts"


def check_duplicates(m) -> str:
    a, b = MountPoint(type="volume", destination="/d", source="x"), MountPoint(type="tmpfs", destination="/d")
    expect_raises("two mounts on /d", lambda: m.check_duplicates([a, b]), MountError,
                  saying="Duplicate mount point: /d")
    expect("two different targets", m.check_duplicates([a, MountPoint(type="tmpfs", destination="/e")]), None)
    return "the same target twice is refused"


def check_order(m) -> str:
    pts = [MountPoint(type="bind", destination="/a/b/c", source="/h/c"),
           MountPoint(type="bind", destination="/a", source="/h/a"),
           MountPoint(type="tmpfs", destination="/a/b")]
    expect("destinations, in order", [x["destination"] for x in m.oci_mounts(pts)], ["/a", "/a/b", "/a/b/c"])
    return "parents before children"


def check_bind_entry(m) -> str:
    [got] = m.oci_mounts([MountPoint(type="volume", destination="/data", source="v", host_path="/vol/v/_data",
                                     rw=False)])
    expect("the entry of a read-only volume", got,
           {"destination": "/data", "type": "bind", "source": "/vol/v/_data", "options": ["rbind", "rprivate", "ro"]})
    return "rbind, rprivate, ro; a volume's host directory is the source"


def check_tmpfs_entry(m) -> str:
    [got] = m.oci_mounts([MountPoint(type="tmpfs", destination="/run", tmpfs_options=["size=1m"])])
    expect("the entry of --tmpfs /run:size=1m", got,
           {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "nodev", "noexec", "size=1m"]})
    return "tmpfs with docker's default options"


CHECKS = [
    ("1 parse_bind: named volume", check_named),
    ("1 parse_bind: bind, ro/rw", check_bind_ro),
    ("1 parse_bind: anonymous volume", check_anonymous),
    ("1 parse_bind: docker's errors", check_errors),
    ("2 check_duplicates: one target, one mount", check_duplicates),
    ("3 oci_mounts: parents first", check_order),
    ("3 oci_mounts: a read-only volume", check_bind_entry),
    ("3 oci_mounts: a tmpfs", check_tmpfs_entry),
]


def check(module):
    return run_checks(CHECKS, module)


if __name__ == "__main__":
    from minidocker.labs import script_main
    sys.exit(script_main(sys.argv[1:], check, REFERENCE, HERE / "skeleton.py", "lab 12 (volumes)",
                         needs_root=NEEDS_ROOT))

"""``minidockerd --userns-remap``: every container's root is an unprivileged host id.

What this teaches
-----------------
dockerd's user-namespace remapping (docs "Isolate containers with a user namespace"): the daemon
option names a user (``default`` = ``dockremap``, created with subordinate ranges if missing) or ``USER[:GROUP]``; the
user's *first* range in /etc/subuid and the group's first in /etc/subgid (subuid(5), subgid(5))
become the container's maps, container id 0 = the range's start. Every container gets a user
namespace with those maps (``linux.uidMappings``/``gidMappings`` in its OCI spec); ``--userns=host``
opts one out. How the image's layers then show the mapped owners: runtime/idmap.py.
"""
from __future__ import annotations

import os
import subprocess

DEFAULT_USER = "dockremap"


def _table(path: str) -> list[list[str]]:
    """Colon-separated rows of any of the four files (runtime/init.py's reader keeps only passwd
    and group rows, 4+ fields; subuid rows have 3)."""
    with open(path) as f:
        return [line.rstrip("\n").split(":") for line in f if line.strip() and not line.startswith("#")]


def _first_range(path: str, name: str, number: str) -> tuple[int, int]:
    for row in _table(path):
        if len(row) >= 3 and row[0] in (name, number):
            return int(row[1]), int(row[2])
    raise ValueError(f"no subordinate ids found for {name!r} in {path}")


RANGE_START, RANGE_SIZE = 100000, 65536   # dockerd's first candidate and size for dockremap


def next_free_range(path: str, size: int = RANGE_SIZE) -> int:
    """The first start >= 100000 whose ``size`` ids overlap no range in ``path`` (what dockerd picks
    for ``dockremap``: after every range that would overlap, in start order)."""
    start = RANGE_START
    for row in sorted((r for r in _table(path) if len(r) >= 3), key=lambda r: int(r[1])):
        first, length = int(row[1]), int(row[2])
        if start < first + length and first < start + size:
            start = first + length
    return start


def ensure_default_user(etc: str = "/etc") -> None:
    """``--userns-remap default``, as dockerd does it: create the system user ``dockremap`` if
    missing (useradd(8)), and give it subordinate uid and gid ranges if it has none (usermod(8)
    --add-subuids/--add-subgids: 65536 ids from the first free start >= 100000). ``etc``: where the
    files are (tests pass a copy; useradd/usermod --prefix)."""
    prefix = ["--prefix", os.path.dirname(etc)] if os.path.abspath(etc) != "/etc" else []
    if not any(r[0] == DEFAULT_USER for r in _table(os.path.join(etc, "passwd"))):
        _run(["useradd", *prefix, "--system", "--shell", "/bin/false", "--no-create-home", DEFAULT_USER])
    for kind, flag in (("subuid", "--add-subuids"), ("subgid", "--add-subgids")):
        path = os.path.join(etc, kind)
        if not os.path.exists(path):
            with open(path, "a"):
                pass
        if not any(len(r) >= 3 and r[0] == DEFAULT_USER for r in _table(path)):
            start = next_free_range(path)
            _run(["usermod", *prefix, flag, f"{start}-{start + RANGE_SIZE - 1}", DEFAULT_USER])


def _run(argv: list[str]) -> None:
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise ValueError(f"{argv[0]} failed: {(r.stderr or r.stdout).strip()}")


def resolve(option: str, etc: str = "/etc") -> dict:
    """``default`` or ``USER[:GROUP]`` -> {"user", "group", "uidMappings", "gidMappings"} (OCI form),
    from ``etc``/passwd, group, subuid and subgid. Raises ValueError with dockerd-like wording when
    the user or its ranges are missing."""
    user, _, grp = option.partition(":")
    if user == "default":
        user = grp = DEFAULT_USER
        ensure_default_user(etc)
    passwd, group = os.path.join(etc, "passwd"), os.path.join(etc, "group")
    subuid, subgid = os.path.join(etc, "subuid"), os.path.join(etc, "subgid")
    row = next((r for r in _table(passwd) if user in (r[0], r[2])), None)
    if row is None:
        raise ValueError(f"error during lookup of user {user!r} for remapping: user not found")
    grp = grp or row[0]
    grow = next((r for r in _table(group) if grp in (r[0], r[2])), None)
    uid_start, uid_size = _first_range(subuid, row[0], row[2])
    gname, gid = (grow[0], grow[2]) if grow else (grp, grp)
    gid_start, gid_size = _first_range(subgid, gname, gid)
    return {"user": row[0], "group": gname,
            "uidMappings": [{"containerID": 0, "hostID": uid_start, "size": uid_size}],
            "gidMappings": [{"containerID": 0, "hostID": gid_start, "size": gid_size}]}


def container_id_mappings(container_dir: str) -> tuple[list, list] | None:
    """A container's user-namespace maps, from its OCI spec (``linux.uidMappings``/``gidMappings``),
    or None: what a commit (or a build step's layer) maps the on-disk host ids back through."""
    from ..util import read_json
    linux = (read_json(os.path.join(container_dir, "config.json")) or {}).get("linux") or {}
    return (linux["uidMappings"], linux.get("gidMappings") or []) if linux.get("uidMappings") else None

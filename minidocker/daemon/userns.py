"""``minidockerd --userns-remap``: every container's root is an unprivileged host id.

What this teaches
-----------------
dockerd's user-namespace remapping (docs "Isolate containers with a user namespace"): the daemon
option names a user (``default`` = ``dockremap``, created if missing) or ``USER[:GROUP]``; the
user's *first* range in /etc/subuid and the group's first in /etc/subgid (subuid(5), subgid(5))
become the container's maps, container id 0 = the range's start. Every container gets a user
namespace with those maps (``linux.uidMappings``/``gidMappings`` in its OCI spec); ``--userns=host``
opts one out. How the image's layers then show the mapped owners: runtime/idmap.py.
"""
from __future__ import annotations

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


def resolve(option: str, passwd: str = "/etc/passwd", group: str = "/etc/group",
            subuid: str = "/etc/subuid", subgid: str = "/etc/subgid") -> dict:
    """``default`` or ``USER[:GROUP]`` -> {"user", "group", "uidMappings", "gidMappings"} (OCI form).
    Raises ValueError with dockerd-like wording when the user or its ranges are missing."""
    user, _, grp = option.partition(":")
    if user == "default":
        user = grp = DEFAULT_USER
        if not any(r[0] == user for r in _table(passwd)):
            # dockerd runs useradd too; it also adds subuid/subgid lines, which we leave to the admin
            subprocess.run(["useradd", "--system", "--shell", "/bin/false", "--no-create-home", user],
                           check=True, capture_output=True)
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

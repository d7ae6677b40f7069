"""Host sysctls the network needs, changed only while needed and then restored.

A bridge network that NATs to the outside needs ``net.ipv4.ip_forward=1`` (the host must route
between the bridge and other interfaces). That is a *host-wide* setting, and several daemons (a
test's, the user's) may need it at once. So each user takes a **hold** — a file named after it in
``/run/minidocker-sysctl/<key>/`` — and the value found before the first hold is saved beside
them; when the last hold goes, that value is written back. A lock file serialises the daemons.
Man page: sysctl(8); Documentation/networking/ip-sysctl.rst.
"""
from __future__ import annotations

import fcntl
import os

HOLDS = "/run/minidocker-sysctl"


def _proc(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


def read(key: str) -> str:
    with open(_proc(key)) as f:
        return f.read().strip()


def _write(key: str, value: str) -> None:
    with open(_proc(key), "w") as f:
        f.write(value)


class _Locked:
    def __init__(self, base):
        os.makedirs(base, exist_ok=True)
        self.fd = os.open(os.path.join(base, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def __enter__(self):
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def hold(key: str, value: str, holder: str, base: str = HOLDS) -> None:
    """Set ``key`` to ``value`` for ``holder`` (saving the original for the last release)."""
    d = os.path.join(base, key)
    with _Locked(base):
        os.makedirs(d, exist_ok=True)
        orig = os.path.join(d, ".original")
        if not os.path.exists(orig):
            with open(orig, "w") as f:
                f.write(read(key))
        open(os.path.join(d, holder), "w").close()
        if read(key) != value:
            _write(key, value)


def release(key: str, holder: str, base: str = HOLDS) -> None:
    """Drop ``holder``'s hold; the last one restores the original value."""
    d = os.path.join(base, key)
    with _Locked(base):
        try:
            os.unlink(os.path.join(d, holder))
        except FileNotFoundError:
            return
        if any(n != ".original" for n in os.listdir(d)):
            return
        orig = os.path.join(d, ".original")
        with open(orig) as f:
            _write(key, f.read().strip())
        os.unlink(orig)
        os.rmdir(d)


def holders(key: str, base: str = HOLDS) -> list[str]:
    try:
        return sorted(n for n in os.listdir(os.path.join(base, key)) if n != ".original")
    except FileNotFoundError:
        return []

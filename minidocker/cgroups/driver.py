"""The one interface every cgroup driver implements (runc's ``cgroups.Manager``, reduced).

Lifecycle: ``create`` (mkdir, with the parent prepared) -> ``apply(limits)`` -> ``add(pid)`` ->
``stats()``, ``freeze()``/``thaw()``, ``kill()`` -> ``destroy()`` (kill what is left, wait until
empty, rmdir). ``oom_kills()`` counts the OOM killer's victims, read once the container exited.
"""
from __future__ import annotations

import os
import signal
import threading
import time


class Cgroup:
    version = "?"

    def __init__(self, path: str):
        self.path = path  # relative to each hierarchy's root, e.g. "/minidocker/ID"

    # ---- the interface --------------------------------------------------------------------------
    def create(self) -> None: raise NotImplementedError
    def apply(self, limits) -> list[str]: raise NotImplementedError  # returns what it could not enforce
    def add(self, pid: int) -> None: raise NotImplementedError
    def pids(self) -> list[int]: raise NotImplementedError
    def freeze(self) -> None: raise NotImplementedError
    def thaw(self) -> None: raise NotImplementedError
    def frozen(self) -> bool: raise NotImplementedError
    def kill(self) -> None: raise NotImplementedError
    def stats(self) -> dict: raise NotImplementedError
    def oom_kills(self) -> int: raise NotImplementedError
    def directories(self) -> list[str]: raise NotImplementedError
    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self.directories())

    def destroy(self, timeout: float = 5.0) -> None:
        """Kill whatever is still inside, wait until the group is empty, then rmdir it (rmdir of a
        populated cgroup fails with EBUSY: the kernel will not orphan processes)."""
        if not self.exists():
            return
        deadline = time.monotonic() + timeout
        if self.pids():
            self.kill()
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.01)
        for d in sorted(self.directories(), key=len, reverse=True):
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    # EBUSY: a dying task is still being torn down by the kernel; try again briefly.
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)


# ---- small file helpers shared by the drivers and the controller modules ----------------------
def write(directory: str, name: str, value) -> None:
    """One value into one control file. The kernel parses it at write(2) time, so a bad value fails
    right here with EINVAL; we name the file in the error."""
    path = os.path.join(directory, name)
    recording = getattr(RECORDING, "writes", None)
    if recording is not None:
        recording.append((path, str(value)))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC | (os.O_CREAT if _fake(directory) else 0), 0o644)
    except OSError as e:
        raise OSError(e.errno, f"cannot open {path}: {e.strerror}") from None
    try:
        os.write(fd, str(value).encode())
    except OSError as e:
        raise OSError(e.errno, f"writing {value!r} to {path}: {e.strerror}") from None
    finally:
        os.close(fd)


def read(directory: str, name: str, default: str = "") -> str:
    try:
        with open(os.path.join(directory, name)) as f:
            return f.read().strip()
    except OSError:
        return default


def read_int(directory: str, name: str, default: int = 0) -> int:
    v = read(directory, name)
    if v == "max":
        return -1
    try:
        return int(v.split()[0])
    except (ValueError, IndexError):
        return default


def read_keyed(directory: str, name: str) -> dict[str, int]:
    """Flat keyed files (``memory.stat``, ``cpu.stat``, ``pids.events``): "key value" per line."""
    out = {}
    for line in read(directory, name).splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return out


def has(directory: str, name: str) -> bool:
    return os.path.exists(os.path.join(directory, name))


# Unit tests run the drivers on a plain directory tree (a "fake cgroupfs") under these roots, where
# control files do not appear by themselves on mkdir. On the real filesystem we never create files.
FAKE_ROOTS: list[str] = []
# When RECORDING.writes is a list, this thread's write() calls are also appended to it as
# (path, value): ``--explain`` uses it. Thread-local: the daemon starts containers meanwhile.
RECORDING = threading.local()


def _fake(directory: str) -> bool:
    return any(directory.startswith(r) for r in FAKE_ROOTS)


def signal_all(pids: list[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

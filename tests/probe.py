"""The security probe (tests/probe/probe.c): build it, run it, read its answers.

``build_probe(dir)`` compiles probe.c with ``gcc -static`` into ``dir`` (default: the user cache,
``$MINIDOCKER_CACHE/probe``), named after the source's hash, so it is built once per change of the
source and reused across test sessions; the binary runs in any rootfs (busybox, an OCI bundle).
``parse(text)`` turns its output (``NAME RESULT [key=value ...]``) into ``{NAME: Answer}``.
The probe's header says what each attack does and why it is safe to run.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probe", "probe.c")

# The attacks, in the probe's order (``facts`` prints the Cap*/Seccomp/NoNewPrivs lines instead).
ATTACKS = ("facts", "blockdev", "mount", "fsopen", "handle", "keyctl", "bpf", "unshare", "kcmp",
           "net_admin", "proc_sys", "remount_sys", "pids", "masked")


def default_dir() -> str:
    base = os.environ.get("MINIDOCKER_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "minidocker")
    return os.path.join(base, "probe")


def build_probe(dir: str | None = None) -> str:
    """Path of the static probe binary, compiled if this version of the source is not there yet."""
    dir = dir or default_dir()
    with open(SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    path = os.path.join(dir, f"probe-{digest}")
    if os.path.exists(path):
        return path
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RuntimeError("building the probe needs gcc (make setup installs it)")
    os.makedirs(dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dir, prefix=".probe-")
    os.close(fd)
    try:
        r = subprocess.run([gcc, "-static", "-O2", "-Wall", "-o", tmp, SOURCE], capture_output=True,
                           text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"gcc -static probe.c failed:\n{r.stderr}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)   # atomic: a concurrent session sees no half-written binary
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


@dataclass
class Answer:
    result: str                      # "OK", an errno name, or a fact's value
    detail: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.result == "OK"


def parse(text: str) -> dict[str, Answer]:
    """``"mount EPERM\\nfsopen OK marker=x\\n"`` -> ``{"mount": Answer("EPERM"), "fsopen": Answer("OK", {"marker": "x"})}``."""
    out: dict[str, Answer] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        detail = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
        out[parts[0]] = Answer(parts[1], detail)
    return out

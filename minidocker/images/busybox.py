"""Build a real OCI image from Debian's static busybox, offline and reproducibly.

What this teaches
-----------------
An image is nothing magic: a tar of files (the layer), a JSON config naming that tar's digest and
how to run it, and a JSON manifest naming both (OCI image-spec layer.md, config.md, manifest.md).
Build them byte-for-byte deterministically and two machines with the same busybox package get the
same manifest digest and the same image id, with no registry involved:

* one uncompressed layer (``application/vnd.oci.image.layer.v1.tar``), so its digest is also its
  DiffID;
* entries sorted by path, owner 0:0 named root:root, GNU tar format (no PAX records, so no
  extended timestamps), every mtime = the busybox binary's mtime truncated to whole seconds
  (dpkg sets it from the package, not from the install time);
* the applets are symlinks to ``/bin/busybox`` at the paths ``busybox --list-full`` prints
  (``bin/sh``, ``usr/bin/env``, ...); busybox picks the applet from argv[0];
* config and manifest are canonical JSON (sorted keys, no spaces); ``created`` is that same mtime.
"""
from __future__ import annotations

import io
import json
import os
import platform
import posixpath
import re
import subprocess
import tarfile
from datetime import datetime, timezone

from .store import (MEDIA_TYPE_CONFIG, MEDIA_TYPE_LAYER, MEDIA_TYPE_MANIFEST, Image, ImageStore,
                    sha256_digest)

DEFAULT_BUSYBOX = "/bin/busybox"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MISSING_MESSAGE = "busybox-static is not installed: apt-get install busybox-static (make setup does it)"

# Directories every image of ours has, with their modes (root 0700 and sticky /tmp as usual).
BASE_DIRS = {
    "bin": 0o755, "dev": 0o755, "etc": 0o755, "home": 0o755, "proc": 0o555, "root": 0o700,
    "sbin": 0o755, "sys": 0o555, "tmp": 0o1777, "usr": 0o755, "usr/bin": 0o755,
    "usr/sbin": 0o755, "var": 0o755, "var/tmp": 0o1777,
}
ETC_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
ETC_GROUP = "root:x:0:\nnobody:x:65534:\n"

# Python's platform.machine() -> OCI/Go architecture names (config.md "architecture": GOARCH).
GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
          "armv7l": "arm", "armv6l": "arm", "i386": "386", "i686": "386", "ppc64le": "ppc64le",
          "s390x": "s390x", "riscv64": "riscv64"}


class BusyboxMissing(RuntimeError):
    """/bin/busybox (Debian's busybox-static) is not there."""


def canonical_json(obj) -> bytes:
    """The serialisation whose digest we publish: sorted keys, no whitespace."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def busybox_available(path: str = DEFAULT_BUSYBOX) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _require(path: str) -> None:
    if not busybox_available(path):
        raise BusyboxMissing(f"{MISSING_MESSAGE} ({path} not found)")


def busybox_version(path: str = DEFAULT_BUSYBOX) -> str:
    """``1:1.35.0-4+deb12u1+b1`` from the banner ``BusyBox v1.35.0 (Debian 1:1.35.0-...)``."""
    banner = subprocess.run([path, "--help"], capture_output=True, text=True).stdout
    first = banner.splitlines()[0] if banner else ""
    m = re.search(r"\(Debian ([^)]+)\)", first) or re.search(r"BusyBox v(\S+)", first)
    return m.group(1) if m else "unknown"


def applet_paths(path: str = DEFAULT_BUSYBOX) -> list[str]:
    """Where each applet lives (``bin/sh``, ``usr/bin/env``...), from ``busybox --list-full``."""
    out = subprocess.run([path, "--list-full"], capture_output=True, text=True, check=True).stdout
    return sorted({line.strip().lstrip("/") for line in out.splitlines()
                   if line.strip() and line.strip().lstrip("/") != "bin/busybox"})


def goarch(machine: str | None = None) -> str:
    machine = machine or platform.machine()
    return GOARCH.get(machine, machine)


def _rfc3339(t: int) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- the layer ------------------------------------------------------------------------------


def _info(name: str, kind: bytes, mode: int, mtime: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.mtime = kind, mode, mtime
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    return ti


def build_layer(busybox: str = DEFAULT_BUSYBOX) -> bytes:
    """The image's single layer: an uncompressed, deterministic tar (returned as bytes)."""
    _require(busybox)
    mtime = int(os.stat(busybox).st_mtime)
    with open(busybox, "rb") as f:
        binary = f.read()
    applets = applet_paths(busybox)
    dirs = dict(BASE_DIRS)
    for p in applets:  # every applet's directory (and its parents) must exist
        d = posixpath.dirname(p)
        while d and d not in dirs:
            dirs[d], d = 0o755, posixpath.dirname(d)
    files = {"bin/busybox": (binary, 0o755), "etc/passwd": (ETC_PASSWD.encode(), 0o644),
             "etc/group": (ETC_GROUP.encode(), 0o644)}
    entries: list[tuple[str, tarfile.TarInfo, bytes | None]] = []
    for name, mode in dirs.items():
        entries.append((name, _info(name, tarfile.DIRTYPE, mode, mtime), None))
    for name, (data, mode) in files.items():
        ti = _info(name, tarfile.REGTYPE, mode, mtime)
        ti.size = len(data)
        entries.append((name, ti, data))
    for name in applets:
        if name in files or name in dirs:
            continue
        ti = _info(name, tarfile.SYMTYPE, 0o777, mtime)
        ti.linkname = "/bin/busybox"
        entries.append((name, ti, None))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for _, ti, data in sorted(entries, key=lambda e: e[0]):
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


# ---- config, manifest, store -----------------------------------------------------------------


def build_config(diff_id: str, mtime: int, version: str, arch: str) -> dict:
    created = _rfc3339(mtime)
    return {
        "architecture": arch,
        "os": "linux",
        "created": created,
        "config": {"Cmd": ["sh"], "Env": [PATH_ENV]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created,
                     "created_by": f"minidocker build-busybox from Debian busybox-static {version}"}],
    }


def build_manifest(config_bytes: bytes, layer_bytes: bytes) -> dict:
    return {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": {"mediaType": MEDIA_TYPE_CONFIG, "digest": sha256_digest(config_bytes),
                   "size": len(config_bytes)},
        "layers": [{"mediaType": MEDIA_TYPE_LAYER, "digest": sha256_digest(layer_bytes),
                    "size": len(layer_bytes)}],
    }


def build_busybox(store: ImageStore, busybox: str = DEFAULT_BUSYBOX,
                  ref: str = "busybox:latest") -> Image:
    """Build the busybox image into ``store``, tag it ``ref`` and return it."""
    _require(busybox)
    layer = build_layer(busybox)
    diff_id = store.content.put(layer)  # uncompressed: the layer digest is the DiffID
    config = canonical_json(build_config(diff_id, int(os.stat(busybox).st_mtime),
                                         busybox_version(busybox), goarch()))
    store.content.put(config)
    manifest = canonical_json(build_manifest(config, layer))
    return store.add_image(manifest, ref)

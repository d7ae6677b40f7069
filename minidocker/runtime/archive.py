"""``docker cp``: files in and out of a container's root filesystem, as tar streams.

What this teaches
-----------------
A path *inside* a container means nothing on the host until you stand where the container stands.
Resolving ``/etc/hostname`` from the host by string concatenation (``ROOT/rootfs + path``) is the
classic container-escape bug: a symlink in the container (``/etc -> /``... or ``../../../host``)
would be followed on the host. So the copy runs in a short-lived helper process that first gets the
container's view of the filesystem, and only then resolves the path:

* **running container**: setns(2) into its mount namespace — this also makes the namespace's root
  (the container's root after its pivot_root) our root, so every symlink resolves inside it;
* **stopped container**: unshare(2) a private mount namespace, mount the container's root (the same
  overlay of image layers + writable layer its pid 1 gets), chroot(2) into it. Writes land in the
  writable layer; the mount vanishes with the helper.

Once there, the helper takes the container's confinement (``init.confine``: its capability sets,
no_new_privs and seccomp filter, as root of the container): a tar stream is the container's data,
and whatever it makes the helper do, the container's process could do too — nothing more.

The helper speaks tar on stdin/stdout (docker's archive endpoints: ``GET/HEAD/PUT
/containers/ID/archive?path=``) and prints errors on stderr with exit status 2 (not found) or 3
(bad request). Stat results use Go's ``os.FileMode`` bits, because the docker CLI decodes them.
"""
from __future__ import annotations

import json
import os
import stat
import sys
import tarfile
import time

# Go's os.FileMode type bits (what the docker CLI expects in X-Docker-Container-Path-Stat).
GO_DIR, GO_SYMLINK, GO_DEVICE, GO_PIPE, GO_SOCKET, GO_CHAR = 1 << 31, 1 << 27, 1 << 26, 1 << 25, 1 << 24, 1 << 21
GO_SETUID, GO_SETGID, GO_STICKY = 1 << 23, 1 << 22, 1 << 20


def go_mode(st_mode: int) -> int:
    m = st_mode & 0o777
    if stat.S_ISDIR(st_mode):
        m |= GO_DIR
    elif stat.S_ISLNK(st_mode):
        m |= GO_SYMLINK
    elif stat.S_ISFIFO(st_mode):
        m |= GO_PIPE
    elif stat.S_ISSOCK(st_mode):
        m |= GO_SOCKET
    elif stat.S_ISCHR(st_mode):
        m |= GO_DEVICE | GO_CHAR
    elif stat.S_ISBLK(st_mode):
        m |= GO_DEVICE
    if st_mode & stat.S_ISUID:
        m |= GO_SETUID
    if st_mode & stat.S_ISGID:
        m |= GO_SETGID
    if st_mode & stat.S_ISVTX:
        m |= GO_STICKY
    return m


def path_stat(path: str) -> dict:
    st = os.lstat(path)
    name = os.path.basename(os.path.normpath(path)) or "/"
    return {"name": name, "size": st.st_size, "mode": go_mode(st.st_mode),
            "mtime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime)),
            "linkTarget": os.readlink(path) if stat.S_ISLNK(st.st_mode) else ""}


def enter_container_root(container_dir: str, pid: int) -> None:
    """Make "/" the container's root (see the module docstring), then take the container's
    confinement. Call in a single-threaded process."""
    from .. import kernel as K
    from . import spec as S
    oci = S.load(container_dir)
    from . import precompile_seccomp
    from .init import confine          # imported now: the host's files are out of reach below
    precompile_seccomp(oci)            # libseccomp too
    _enter_root(K.Linux(), container_dir, pid, oci)
    confine(K.Linux(), {**oci["process"], "user": {"uid": 0, "gid": 0}}, oci.get("linux") or {})


def _enter_root(k, container_dir: str, pid: int, oci: dict) -> None:
    from .. import kernel as K
    from .. import namespaces
    from . import spec as S
    if pid:
        namespaces.enter(pid, ["mnt"], k)
        os.chdir("/")
        return
    spec = S.rootfs_spec(oci, container_dir)
    k.unshare(K.CLONE_NEWNS)
    k.mount(None, "/", None, K.MS_REC | K.MS_PRIVATE, None)  # nothing we mount leaks to the host
    for m in spec.mounts:
        k.mount(m.source, m.target, m.fstype, m.flags, m.data)
    # Volumes and binds too (docker cp reads and writes through them), read-only ones read-only.
    from .. import rootfs
    rootfs.bind_mount_files(k, spec.rootfs, spec.bind_files)
    os.chroot(spec.rootfs)
    os.chdir("/")
    rootfs.make_paths_readonly(k, S.readonly_binds(oci))


def main(argv: list[str]) -> int:
    mode, container_dir, pid, path = argv[0], argv[1], int(argv[2]), argv[3]
    import bz2, gzip, lzma, zlib  # noqa: F401,E401  tarfile loads these lazily: load them while we can
    try:
        enter_container_root(container_dir, pid)
    except OSError as e:
        print(f"cannot reach the container's filesystem: {e}", file=sys.stderr)
        return 1
    if not path.startswith("/"):
        path = "/" + path
    if mode in ("stat", "get"):
        if not os.path.lexists(path.rstrip("/") or "/"):
            print(f"Could not find the file {path} in container", file=sys.stderr)
            return 2
        if path.endswith("/") and len(path) > 1 and not os.path.isdir(path):
            print(f"{path}: not a directory", file=sys.stderr)
            return 3
        if mode == "stat":
            sys.stdout.write(json.dumps(path_stat(path)))
            return 0
        norm = os.path.normpath(path)
        with tarfile.open(fileobj=sys.stdout.buffer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            tar.add(norm, arcname=os.path.basename(norm) or ".", recursive=True)
        return 0
    if mode == "put":
        if not os.path.exists(path):
            print(f"Could not find the file {path} in container", file=sys.stderr)
            return 2
        if not os.path.isdir(path):
            print("extraction point is not a directory", file=sys.stderr)
            return 3
        with tarfile.open(fileobj=sys.stdin.buffer, mode="r|*") as tar:
            # The "tar" filter refuses absolute names and ".." escapes; we are in the container's
            # root anyway, so even a symlink trick stays inside it.
            tar.extractall(path, filter="tar")
        return 0
    print(f"unknown mode {mode}", file=sys.stderr)
    return 3


def helper_argv(mode: str, container_dir: str, pid: int, path: str) -> list[str]:
    from .launcher import python_argv
    return python_argv("from minidocker.runtime.archive import main; sys.exit(main(sys.argv[1:]))",
                       mode, container_dir, str(pid), path)

"""A rootfs for a container in a user namespace: its files must belong to the *mapped* ids.

What this teaches
-----------------
In a user namespace whose uid 0 is host uid 100000 (``linux.uidMappings``), a file owned by host
uid 0 shows up as 65534 ("nobody") and container-root may not write it. Two ways to fix the image:

* **idmapped mounts** (mount_setattr(2) MOUNT_ATTR_IDMAP, Linux 5.12; overlayfs accepts idmapped
  *layers* since 5.19): each image layer is cloned (open_tree(2) OPEN_TREE_CLONE), the clone is
  given the container's maps through a user namespace fd and attached (move_mount(2)) under the
  container's state directory; the overlay the pid-1 init mounts uses those clones as lowerdirs.
  Nothing is copied, the layers stay owned by 0 on disk and are shared with un-remapped
  containers. The writable layer is *not* idmapped: the init mounts the overlay from inside the
  user namespace, so what container-root creates is stored as host uid 100000 — what
  ``dockerd --userns-remap`` shows too. Measured on this machine's 6.18 kernel: works.
* **a chowned copy** (dockerd's classic way, ``/var/lib/docker/100000.100000/``): every layer
  copied once per mapping with each owner shifted. Costly, but works on any kernel: used when
  mount_setattr fails (ENOSYS, EINVAL: a filesystem without FS_ALLOW_IDMAP, EPERM).

Either way the writable layer's top directories (upperdir, workdir) are chowned to the mapped root,
since the overlay is mounted by container-root. The clones in the host's mount namespace are
detached once the init has mounted its overlay (:func:`release`); its namespace keeps its copies.

Man pages: mount_setattr(2), open_tree(2), move_mount(2), user_namespaces(7); kernel
Documentation/filesystems/idmappings.rst and overlayfs.rst ("idmapped layers").
"""
from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess

from .. import kernel as K
from ..namespaces import IdMap, maps_id, userns_fd
from . import spec as S

log = logging.getLogger("minidocker.runtime")
IDMAP_DIR = "idmap"


def id_maps(spec: dict) -> tuple[list[IdMap], list[IdMap]]:
    """``linux.uidMappings``/``gidMappings`` (containerID, hostID, size) as namespaces.IdMap."""
    linux = spec.get("linux") or {}
    conv = [[IdMap(int(m["containerID"]), int(m["hostID"]), int(m["size"])) for m in linux.get(key) or []]
            for key in ("uidMappings", "gidMappings")]
    if not conv[0] or not conv[1]:
        raise ValueError("a user namespace needs linux.uidMappings and linux.gidMappings")
    return conv[0], conv[1]


def _shift(n: int, maps: list[IdMap]) -> int:
    host = maps_id(maps, n)
    return 65534 if host is None else host


def chowned_copy(src: str, uid_map: list[IdMap], gid_map: list[IdMap]) -> str:
    """The fallback: ``src`` copied once to ``src.<uid>.<gid>`` with every owner shifted through
    the maps (lchown: symlinks themselves, not their targets). Made under a temporary name and
    renamed, so a half-made copy is never used."""
    dst = f"{src.rstrip('/')}.{_shift(0, uid_map)}.{_shift(0, gid_map)}"
    if os.path.isdir(dst):
        return dst
    tmp = f"{dst}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    # cp -a, not shutil.copytree: a layer holds overlay whiteouts (0/0 character devices), opaque
    # directories (trusted.overlay.opaque xattrs) and hard links, which copytree does not copy.
    subprocess.run(["cp", "-a", "--", src, tmp], check=True, capture_output=True)
    for top, dirs, files in os.walk(tmp):
        for name in ([top] if top == tmp else []) + [os.path.join(top, n) for n in dirs + files]:
            st = os.lstat(name)   # each entry once: shifting twice would leave the range
            os.lchown(name, _shift(st.st_uid, uid_map), _shift(st.st_gid, gid_map))
            if not os.path.islink(name):
                os.chmod(name, st.st_mode & 0o7777)  # chown clears setuid/setgid bits: put them back
    os.rename(tmp, dst)
    return dst


def _traversable(path: str) -> None:
    """Container-root is "other" for host-owned directories: every ancestor of a path the init
    mounts from needs o+x (dockerd makes its remapped root 0711 for the same reason)."""
    path = os.path.abspath(path)
    while path != "/":
        mode = os.stat(path).st_mode
        if not mode & 0o001:
            os.chmod(path, (mode & 0o7777) | 0o001)
        path = os.path.dirname(path)


def prepare(spec: dict, state_dir: str, uid_map: list[IdMap], gid_map: list[IdMap], kernel=None) -> list[str]:
    """Rewrite ``spec``'s rootfs mounts (annotation) so their layers show the mapped owners; chown
    the writable layer's directories. Returns the idmapped mounts to :func:`release` after create."""
    k = kernel or K.Linux()
    ann = spec.get("annotations") or {}
    if not ann.get(S.ANNOTATION_ROOTFS_MOUNTS):
        return []   # a plain rootfs directory (runc bundle): its owner must be the mapped root, as for runc
    root_uid, root_gid = _shift(0, uid_map), _shift(0, gid_map)
    mounts = json.loads(ann[S.ANNOTATION_ROOTFS_MOUNTS])
    made: list[str] = []
    ns_fd = None
    base = os.path.join(state_dir, IDMAP_DIR)
    _traversable(state_dir)
    try:
        for m in mounts:
            if m.get("fstype") != "overlay":
                continue
            cwd = m.get("cwd") or "/"
            opts = []
            for opt in (m.get("data") or "").split(","):
                key, _, value = opt.partition("=")
                if key == "lowerdir":
                    layers = []
                    for layer in value.split(":"):
                        src = os.path.join(cwd, layer)
                        if ns_fd is not False:
                            try:
                                if ns_fd is None:
                                    ns_fd = userns_fd(uid_map, gid_map, k)
                                target = os.path.join(base, str(len(made)))
                                os.makedirs(target, exist_ok=True)
                                fd = k.open_tree(src)
                                try:
                                    k.mount_setattr_idmap(fd, ns_fd)
                                    k.move_mount(fd, target)
                                finally:
                                    os.close(fd)
                                made.append(target)
                                layers.append(str(len(made) - 1))
                                continue
                            except OSError as e:
                                if e.errno not in (errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.EOPNOTSUPP):
                                    raise
                                log.warning("idmapped mounts refused here (%s): using chowned copies of the layers", e)
                                ns_fd = False
                        layers.append(chowned_copy(src, uid_map, gid_map))
                        _traversable(os.path.dirname(layers[-1]))
                    opt = "lowerdir=" + ":".join(layers)
                elif key in ("upperdir", "workdir"):
                    path = os.path.join(cwd, value)
                    _traversable(os.path.dirname(path))
                    os.chown(path, root_uid, root_gid)
                    for top, dirs, files in os.walk(path) if key == "workdir" else ():
                        for n in dirs + files:
                            os.lchown(os.path.join(top, n), root_uid, root_gid)
                    opt = f"{key}={path}"
                elif opt == "redirect_dir=off":
                    # Mounted from inside a user namespace the kernel refuses "off" with EPERM
                    # ("off" still *follows* redirects when redirect_always_follow is set, and
                    # following needs privilege in the initial namespace); "nofollow" neither
                    # creates nor follows them: for our snapshots the same (a renamed lower
                    # directory is EXDEV either way). Measured on 6.18.
                    opt = "redirect_dir=nofollow"
                opts.append(opt)
            m["data"] = ",".join(opts)
            m["cwd"] = base if made else None
        ann[S.ANNOTATION_ROOTFS_MOUNTS] = json.dumps(mounts)
    except BaseException:
        release(made, k)
        raise
    finally:
        if isinstance(ns_fd, int) and ns_fd is not False:
            os.close(ns_fd)
    return made


def release(made: list[str], kernel=None) -> None:
    """Detach our copies of the idmapped layers (the container's mount namespace keeps its own)."""
    k = kernel or K.Linux()
    for target in made:
        try:
            k.umount2(target, K.MNT_DETACH)
            os.rmdir(target)
        except OSError:
            pass

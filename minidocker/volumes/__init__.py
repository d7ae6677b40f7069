"""The volumes chapter: data that outlives a container.

What this teaches
-----------------
A container's writable layer is its own: ``docker rm`` deletes it, and everything written there
dies with it. Data meant to last goes somewhere the layer is not — a *mount* on top of the root
filesystem, made in the container's mount namespace before ``pivot_root`` (OCI runtime-spec
config.md ``mounts``):

* a **bind mount** of a host directory (``-v /srv/data:/data``): the host's own tree, seen twice;
* a **named volume** (``-v data:/data``): a directory the daemon owns, ``ROOT/volumes/NAME/_data``,
  bind-mounted the same way — the ``local`` driver is just that, plus optional *options* to mount
  something else there first (``-o type=tmpfs -o device=tmpfs -o o=size=64m``, or a bind-backed one:
  ``-o type=none -o o=bind -o device=/path``);
* a **tmpfs** (``--tmpfs /run``): memory, gone at the container's exit.

:mod:`.store` keeps the volumes (create/inspect/list/remove/prune, reference counts, copy-up of the
image's content into an empty volume); :mod:`.spec` parses what users type (``-v``, ``--mount``,
``--tmpfs``) with docker's validation and turns the result into OCI ``mounts`` entries.

Man pages and specs: mount(2), mount_namespaces(7) (propagation), tmpfs(5), OCI runtime-spec
config.md (mounts); moby ``volume/local``, ``volume/mounts/linux_parser.go`` and the Engine API's
``/volumes`` endpoints (v1.50).
"""
from .spec import MountError, MountPoint, oci_mounts, parse_bind, parse_mount, parse_mount_flag, parse_tmpfs
from .store import VolumeConflict, VolumeError, VolumeNotFound, VolumeStore

__all__ = ["MountError", "MountPoint", "oci_mounts", "parse_bind", "parse_mount", "parse_mount_flag",
           "parse_tmpfs", "VolumeStore", "VolumeError", "VolumeNotFound", "VolumeConflict"]

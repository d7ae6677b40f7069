"""Commit: a container's changes + its config become a new image (``docker commit``).

What this teaches
-----------------
A new image is the old one plus one layer: the changes tar (:func:`minidocker.cow.write_layer`,
stored uncompressed, so its digest *is* its DiffID), a config whose ``rootfs.diff_ids`` and
``history`` grow by one entry (image-spec config.md), and a manifest listing the old layers plus
the new one. The run configuration starts from the *container's* (its Cmd, Env, WorkingDir...,
as docker does) and ``--change`` instructions, a subset of Dockerfile syntax, adjust it.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import shlex

from ..util import now_rfc3339
from .store import MEDIA_TYPE_CONFIG, MEDIA_TYPE_LAYER, MEDIA_TYPE_MANIFEST, Image, ImageStore

CHANGE_COMMANDS = ("CMD", "ENTRYPOINT", "ENV", "WORKDIR", "USER", "LABEL", "EXPOSE", "STOPSIGNAL",
                   "VOLUME")


class ChangeError(ValueError):
    """A --change instruction that is not understood."""


def _command(rest: str) -> list[str]:
    """Dockerfile's two forms: JSON (exec) form, or shell form run by /bin/sh -c."""
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", rest]


def _pairs(rest: str, what: str) -> list[tuple[str, str]]:
    words = shlex.split(rest)
    if words and "=" not in words[0]:           # legacy form: ENV KEY value with spaces
        if len(words) < 2:
            raise ChangeError(f"{what} needs a value: {rest!r}")
        return [(words[0], rest.split(None, 1)[1].strip())]
    out = []
    for w in words:
        k, sep, v = w.partition("=")
        if not sep or not k:
            raise ChangeError(f"{what} wants KEY=VALUE, got {w!r}")
        out.append((k, v))
    return out


def apply_changes(config: dict, changes: list[str]) -> dict:
    """Apply ``--change`` instructions to an image's run config (the ``config`` object), with the
    Dockerfile's semantics that dockerd applies to both ``commit --change`` and ``import --change``
    (builder/dockerfile/dispatchers.go): ENV replaces a variable in place or appends it, WORKDIR is
    relative to the current one, ENTRYPOINT clears the inherited CMD unless a CMD came before it."""
    cfg = copy.deepcopy(config)
    cmd_set = False
    for change in changes:
        typed, _, rest = change.strip().partition(" ")
        word, rest = typed.upper(), rest.strip()
        if word not in CHANGE_COMMANDS:  # dockerd's words: "FROM is not a valid change command"
            raise ChangeError(f"{typed or repr(change)} is not a valid change command "
                              f"(supported: {', '.join(CHANGE_COMMANDS)})")
        if word == "CMD":
            cfg["Cmd"], cmd_set = _command(rest), True
        elif word == "ENTRYPOINT":
            cfg["Entrypoint"] = _command(rest)
            if not cmd_set:
                cfg["Cmd"] = None
        elif word == "ENV":
            env = list(cfg.get("Env") or [])
            for k, v in _pairs(rest, "ENV"):
                keys = [e.partition("=")[0] for e in env]
                if k in keys:
                    env[keys.index(k)] = f"{k}={v}"
                else:
                    env.append(f"{k}={v}")
            cfg["Env"] = env
        elif word == "WORKDIR":
            if not rest:
                raise ChangeError("WORKDIR needs a path")
            cfg["WorkingDir"] = os.path.normpath(os.path.join(cfg.get("WorkingDir") or "/", rest))
        elif word == "USER":
            cfg["User"] = rest
        elif word == "LABEL":
            cfg["Labels"] = {**(cfg.get("Labels") or {}), **dict(_pairs(rest, "LABEL"))}
        elif word == "EXPOSE":
            ports = dict(cfg.get("ExposedPorts") or {})
            for p in rest.split():
                ports[p if "/" in p else p + "/tcp"] = {}
            cfg["ExposedPorts"] = ports
        elif word == "STOPSIGNAL":
            cfg["StopSignal"] = rest
        elif word == "VOLUME":
            vols = _command(rest) if rest.startswith("[") else rest.split()
            cfg["Volumes"] = {**(cfg.get("Volumes") or {}), **{v: {} for v in vols}}
    return cfg


def file_digest(path: str) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return "sha256:" + h.hexdigest(), size


def commit_image(store: ImageStore, base: Image, layer_path: str, run_config: dict, *,
                 changes: list[str] = (), comment: str = "", author: str = "",
                 created_by: str = "", ref: str | None = None) -> Image:
    """Store ``layer_path`` (an uncompressed layer tar) and a new config and manifest on top of
    ``base``; tag the image ``ref`` if given. Raises ChangeError before writing anything."""
    exec_config = apply_changes(run_config, list(changes))
    diff_id, size = file_digest(layer_path)
    store.content.ingest(layer_path, diff_id, size)
    created = now_rfc3339()
    config = copy.deepcopy(base.config)
    config["created"] = created
    config["config"] = exec_config
    if author:
        config["author"] = author
    config["rootfs"] = {"type": "layers", "diff_ids": list(base.diff_ids) + [diff_id]}
    entry = {"created": created, "created_by": created_by or "minidocker commit"}
    if author:
        entry["author"] = author
    if comment:
        entry["comment"] = comment
    config["history"] = list(config.get("history") or []) + [entry]
    layers = list(base.manifest["layers"]) + [{"mediaType": MEDIA_TYPE_LAYER, "digest": diff_id, "size": size}]
    return write_image(store, config, layers, ref)


def write_image(store: ImageStore, config: dict, layers: list[dict], ref: str | None = None) -> Image:
    """Store an image config and a manifest naming it and ``layers`` (blobs already stored);
    tag it ``ref`` if given. Used by commit and by the builder (build/builder.py)."""
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_digest = store.content.put(config_bytes)
    manifest = {"schemaVersion": 2, "mediaType": MEDIA_TYPE_MANIFEST,
                "config": {"mediaType": MEDIA_TYPE_CONFIG, "digest": config_digest,
                           "size": len(config_bytes)},
                "layers": list(layers)}
    return store.add_image(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode(), ref)

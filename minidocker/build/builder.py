"""The classic builder: run a parsed Dockerfile step by step on the image store and snapshotter.

What this teaches
-----------------
Docker's classic builder (moby ``builder/dockerfile``) turns each instruction into an image:
metadata instructions (ENV, CMD, LABEL...) change only the config and add an ``empty_layer``
history entry; RUN runs the shell in a real container on the previous image and commits what it
changed; COPY/ADD write files into a fresh writable snapshot. Here the writable snapshot of a
step is committed *in place* under the new layer's ChainID (unionfs ``commit``): the changes are
tarred once, for the blob and its DiffID, and never extracted again.

The cache (:class:`Cache`) is the classic one: a step is reused when an image exists whose parent
is the current image and whose instruction is the same -- for COPY/ADD "the same" includes the
checksum of the copied files, for RUN the build args in scope. A miss invalidates every later step.

Multi-stage: each FROM starts a stage; ``--target`` stops at a stage; stages the target does not
need (by ``FROM <stage>`` or ``COPY --from=<stage>``) are skipped.

Running a container is the daemon's job, so the builder gets a ``run`` callable (the backend);
everything else (images, snapshots, layers) is chapter code it calls directly.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import posixpath
import secrets
import shutil
import tarfile
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Callable

from .. import cow, unionfs
from ..images.commit import file_digest, write_image
from ..images.layers import uncompressed_stream
from ..images.unpack import unpack
from ..images.store import MEDIA_TYPE_LAYER, Image, ImageNotFound, ImageStore, chain_ids
from ..util import atomic_write_json, now_rfc3339, read_json
from . import context as ctx
from .dockerfile import Dockerfile, DockerfileError, ExpandError, Instruction, expand, expand_words, \
    json_list, key_values, parse

PROXY_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
              "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")
DEFAULT_SHELL = ["/bin/sh", "-c"]
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PLACEHOLDER_FILES = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")
PLACEHOLDER_DIRS = ("/proc", "/sys", "/dev")


class BuildError(Exception):
    """A step failed; the message is what docker prints (and errorDetail carries)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


@dataclass
class Options:
    tags: list[str] = field(default_factory=list)
    build_args: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    target: str = ""
    nocache: bool = False
    quiet: bool = False
    rm: bool = True
    forcerm: bool = False
    network: str = "none"
    platform: str = ""
    pull: bool = False                 # fetch FROM images from their registry even if present


@dataclass
class Stage:
    index: int
    name: str
    base: str                    # FROM's image (unexpanded)
    from_line: Instruction
    steps: list[Instruction]


@dataclass
class State:
    """Where a stage is: an image id (or None for scratch) plus the config being built."""
    image_id: str | None
    config: dict                 # the whole image config (config, rootfs, history, ...)
    layers: list[dict]
    env_args: dict = field(default_factory=dict)   # ARG values in scope (not persisted)
    cmd_set: bool = False

    @property
    def run(self) -> dict:
        return self.config.setdefault("config", {})

    @property
    def diff_ids(self) -> list[str]:
        return list(self.config.get("rootfs", {}).get("diff_ids") or [])

    def top(self) -> str | None:
        ids = chain_ids(self.diff_ids)
        return ids[-1] if ids else None


# ---- stages ---------------------------------------------------------------------------------------

def stages_of(df: Dockerfile) -> tuple[list[Instruction], list[Stage]]:
    """Split at FROM: (ARGs before the first FROM, stages)."""
    meta, stages = [], []
    for ins in df.instructions:
        if ins.cmd == "FROM":
            words = ins.args.split()
            name = ""
            if len(words) == 3 and words[1].lower() == "as":
                name = words[2].lower()
            elif len(words) != 1:
                raise DockerfileError("FROM requires either one or three arguments", ins.line)
            stages.append(Stage(len(stages), name, words[0], ins, []))
        elif not stages:
            if ins.cmd != "ARG":
                raise DockerfileError("no build stage in current context" if ins.cmd != "FROM" else "",
                                      ins.line)
            meta.append(ins)
        else:
            stages[-1].steps.append(ins)
    if not stages:
        raise DockerfileError("no build stage in current context")
    return meta, stages


def find_stage(stages: list[Stage], ref: str, before: int) -> Stage | None:
    for s in stages[:before]:
        if s.name and s.name == ref.lower():
            return s
    if ref.isdigit() and int(ref) < before:
        return stages[int(ref)]
    return None


def needed_stages(stages: list[Stage], target: int, meta_env: dict, escape: str) -> list[int]:
    """The stages the target depends on (FROM <stage>, COPY --from=<stage>), in order."""
    need, todo = set(), [target]
    while todo:
        i = todo.pop()
        if i in need:
            continue
        need.add(i)
        st = stages[i]
        refs = [expand(st.base, meta_env, escape)] + [
            ins.flags["from"] for ins in st.steps if ins.cmd == "COPY" and "from" in ins.flags]
        for ref in refs:
            dep = find_stage(stages, ref, i)
            if dep is not None:
                todo.append(dep.index)
    return sorted(need)


# ---- the cache ------------------------------------------------------------------------------------

class Cache:
    """key (parent image id + instruction + content checksums) -> image id; ROOT/build/cache.json."""

    def __init__(self, path: str):
        self.path = path

    @staticmethod
    def key(parent: str | None, instruction: str, extra: str = "") -> str:
        return hashlib.sha256(f"{parent or 'scratch'}\n{instruction}\n{extra}".encode()).hexdigest()

    def get(self, key: str) -> str | None:
        return (read_json(self.path, default={}).get(key) or {}).get("id")

    def put(self, key: str, image_id: str, parent: str | None) -> None:
        entries = read_json(self.path, default={})
        entries[key] = {"id": image_id, "parent": parent}
        atomic_write_json(self.path, entries)

    def parents(self) -> set[str]:
        """Images some cached step was built on: docker lists them only with ``images -a``."""
        return {e.get("parent") for e in read_json(self.path, default={}).values()} - {None}

    def clear(self) -> list[str]:
        entries = read_json(self.path, default={})
        atomic_write_json(self.path, {})
        return sorted({e["id"] for e in entries.values()})


# ---- the builder ----------------------------------------------------------------------------------

RunFn = Callable[..., int]


class Builder:
    """One build. ``run(argv=, env=, user=, workdir=, image_id=, image_config=, prepare=, output=)``
    is the daemon's container path: it creates a container whose writable snapshot ``prepare(cid)``
    makes, runs it to the end (no network), streams its output to ``output(text)``, and returns
    (exit code, container id); ``remove(cid)`` deletes the container. ``pull(ref)`` fetches a
    missing base image (or raises ImageNotFound)."""

    def __init__(self, store: ImageStore, snapshotter: unionfs.Snapshotter, cache: Cache,
                 context_dir: str, run, remove, pull=None, progress=print, id_mappings=None):
        self.store, self.snap, self.cache = store, snapshotter, cache
        # A RUN container's user-namespace maps (``--userns-remap``): its files have remapped host
        # ids on disk, and the layer records the ids the container saw (cow.write_layer).
        self.id_mappings = id_mappings or (lambda cid: None)
        self.context = context_dir
        self.run_container, self.remove_container = run, remove
        self.pull = pull
        self.say = progress
        self.step, self.total = 0, 0
        self.stage_results: dict[int, State] = {}

    # -- entry point --
    def build(self, dockerfile_text: bytes | str, opts: Options) -> Image:
        df = parse(dockerfile_text)
        self.escape = df.escape
        meta, stages = stages_of(df)
        meta_env: dict = {}
        for ins in meta:
            for k, v in key_values(ins.args, meta_env, df.escape, "ARG", ins.line):
                meta_env[k] = opts.build_args.get(k, v) if k in opts.build_args else (v or "")
        self.meta_defaults = meta_env
        self.stage_names = {s.index: s.name for s in stages if s.name}
        target = len(stages) - 1
        if opts.target:
            found = find_stage(stages, opts.target, len(stages))
            if found is None:
                raise BuildError(f"failed to reach build target {opts.target} in Dockerfile")
            target = found.index
        todo = needed_stages(stages, target, meta_env, df.escape)
        self.total = len(meta) + sum(1 + len(stages[i].steps) for i in todo)
        self.opts = opts
        self.used_args: set[str] = set()
        for ins in meta:
            self._announce(ins)
        state = None
        for i in todo:
            state = self._stage(stages, stages[i], opts)
            self.stage_results[i] = state
        unused = sorted(set(opts.build_args) - self.used_args - set(meta_env) - set(PROXY_ARGS))
        if unused:
            self.say(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed\n")
        if opts.labels:
            state = self._metadata(state, f"LABEL {' '.join(f'{k}={json.dumps(v)}' for k, v in sorted(opts.labels.items()))}",
                                   lambda s: s.run.__setitem__("Labels", {**(s.run.get("Labels") or {}), **opts.labels}))
        image = self.store.resolve(state.image_id)
        return image

    def _announce(self, ins: Instruction) -> None:
        self.step += 1
        self.say(f"Step {self.step}/{self.total} : {ins.original}\n")

    # -- a stage --
    def _stage(self, stages, stage: Stage, opts: Options) -> State:
        self._announce(stage.from_line)
        base_ref = expand(stage.base, self.meta_defaults, self.escape)
        platform = stage.from_line.flags.get("platform") or opts.platform
        if platform and platform.split("/")[:2] not in (["linux", _host_arch()], ["linux"]):
            raise BuildError(f"FROM --platform={platform}: only linux/{_host_arch()} images can be built here")
        dep = find_stage(stages, base_ref, stage.index)
        if dep is not None:
            state = copy.deepcopy(self.stage_results[dep.index])
        elif base_ref.lower() == "scratch":
            state = State(None, {"architecture": _host_arch(), "os": "linux", "config": {"Env": [DEFAULT_PATH]},
                                 "rootfs": {"type": "layers", "diff_ids": []}, "history": []}, [])
        else:
            state = self._base_image(base_ref, pull=opts.pull)
        state.env_args, state.cmd_set = {}, False
        if state.image_id:
            self.say(f" ---> {_short(state.image_id)}\n")
        triggers = state.run.pop("OnBuild", None) or []
        if triggers:
            self.say(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n")
        for text in triggers:
            for ins in parse(text).instructions:
                state = self._execute(state, ins, announce=False)
        for ins in stage.steps:
            state = self._execute(state, ins)
        if state.image_id is None:      # FROM scratch with nothing else: still an image
            state = self._metadata(state, "", lambda s: None)
        return state

    def _base_image(self, ref: str, pull: bool = False) -> State:
        try:
            if pull and self.pull is not None:
                raise ImageNotFound(ref)
            image = self.store.resolve(ref)
        except ImageNotFound:
            if self.pull is None:
                raise BuildError(f"pull access denied for {ref}, repository does not exist or may require 'docker login'")
            image = self.pull(ref)
        except ValueError as e:
            raise BuildError(f"invalid reference format: {e}")
        unpack(self.store, self.snap, image)        # its layers as committed snapshots
        return self._state_of(image)

    @staticmethod
    def _state_of(image: Image) -> State:
        return State(image.id, copy.deepcopy(image.config), list(image.manifest["layers"]))

    # -- one instruction --
    def _execute(self, state: State, ins: Instruction, announce: bool = True) -> State:
        if announce:
            self._announce(ins)
        env = self._scope(state)
        try:
            handler = getattr(self, "_i_" + ins.cmd.lower())
            return handler(state, ins, env)
        except (ExpandError, ctx.ContextError) as e:
            raise BuildError(f"Dockerfile line {ins.line}: {e}")
        except DockerfileError as e:
            raise BuildError(str(e))
        except (unionfs.SnapshotError, OSError) as e:
            raise BuildError(f"{ins.cmd} failed (Dockerfile line {ins.line}): {e}")

    def _scope(self, state: State) -> dict:
        env = dict(e.split("=", 1) for e in state.run.get("Env") or [] if "=" in e)
        return {**state.env_args, **env}

    def _cached(self, state: State, key: str) -> State | None:
        if self.opts.nocache:
            return None
        image_id = self.cache.get(key)
        if not image_id:
            return None
        try:
            image = self.store.resolve(image_id)
        except (ImageNotFound, ValueError):
            return None
        for chain in image.chain_ids:            # the layers must still be there
            if not self.snap.exists(chain):
                return None
        self.say(" ---> Using cache\n")
        new = self._state_of(image)
        new.env_args, new.cmd_set = state.env_args, state.cmd_set
        return new

    def _finish(self, state: State, key: str, new: State, hit: bool = False) -> State:
        new.env_args, new.cmd_set = state.env_args, new.cmd_set
        if not hit:
            self.cache.put(key, new.image_id, state.image_id)
        self.say(f" ---> {_short(new.image_id)}\n")
        return new

    def _history(self, created_by: str, empty: bool) -> dict:
        h = {"created": now_rfc3339(), "created_by": created_by, "comment": "minidocker build"}
        if empty:
            h["empty_layer"] = True
        return h

    def _metadata(self, state: State, text: str, change) -> State:
        """ENV, CMD, LABEL...: a new image with the same layers and a changed config."""
        key = Cache.key(state.image_id, text)
        hit = self._cached(state, key)
        if hit is not None:
            hit.cmd_set = state.cmd_set
            return self._finish(state, key, hit, hit=True)
        new = copy.deepcopy(state)
        change(new)
        new.config["created"] = now_rfc3339()
        new.config.setdefault("history", []).append(self._history(f"/bin/sh -c #(nop) {text}".rstrip(), True))
        new.image_id = write_image(self.store, new.config, new.layers).id
        return self._finish(state, key, new)

    # -- metadata instructions --
    def _i_env(self, state, ins, env):
        pairs = key_values(ins.args, env, self.escape, "ENV", ins.line)

        def change(s):
            e = list(s.run.get("Env") or [])
            for k, v in pairs:
                e = [x for x in e if x.partition("=")[0] != k] + [f"{k}={v}"]
            s.run["Env"] = e
        return self._metadata(state, "ENV " + " ".join(f"{k}={v}" for k, v in pairs), change)

    def _i_label(self, state, ins, env):
        pairs = key_values(ins.args, env, self.escape, "LABEL", ins.line)
        return self._metadata(state, "LABEL " + " ".join(f"{k}={v}" for k, v in pairs),
                              lambda s: s.run.__setitem__("Labels", {**(s.run.get("Labels") or {}), **dict(pairs)}))

    def _i_maintainer(self, state, ins, env):
        return self._metadata(state, ins.original, lambda s: s.config.__setitem__("author", ins.args))

    def _command(self, state, ins) -> list[str]:
        form = ins.json_form()
        return form if form is not None else list(state.run.get("Shell") or DEFAULT_SHELL) + [ins.args]

    def _i_cmd(self, state, ins, env):
        cmd = self._command(state, ins)
        new = self._metadata(state, f"CMD {json.dumps(cmd)}", lambda s: s.run.__setitem__("Cmd", cmd))
        new.cmd_set = True
        return new

    def _i_entrypoint(self, state, ins, env):
        ep = self._command(state, ins)
        reset_cmd = not state.cmd_set          # ENTRYPOINT resets a CMD inherited from the base

        def change(s):
            s.run["Entrypoint"] = ep
            if reset_cmd:
                s.run["Cmd"] = None
        return self._metadata(state, f"ENTRYPOINT {json.dumps(ep)}", change)

    def _i_shell(self, state, ins, env):
        shell = ins.json_form()
        if not shell:
            raise DockerfileError("SHELL requires the arguments to be in JSON form", ins.line)
        return self._metadata(state, f"SHELL {json.dumps(shell)}", lambda s: s.run.__setitem__("Shell", shell))

    def _i_workdir(self, state, ins, env):
        path = expand(ins.args.strip(), env, self.escape)
        full = posixpath.normpath(posixpath.join(state.run.get("WorkingDir") or "/", path))
        return self._metadata(state, f"WORKDIR {full}", lambda s: s.run.__setitem__("WorkingDir", full))

    def _i_user(self, state, ins, env):
        user = expand(ins.args.strip(), env, self.escape)
        return self._metadata(state, f"USER {user}", lambda s: s.run.__setitem__("User", user))

    def _i_expose(self, state, ins, env):
        ports = []
        for p in expand_words(ins.args, env, self.escape):
            port, _, proto = p.partition("/")
            if not port.replace("-", "").isdigit():
                raise DockerfileError(f"invalid containerPort: {port}", ins.line)
            ports.append(f"{port}/{(proto or 'tcp').lower()}")
        return self._metadata(state, "EXPOSE " + " ".join(ports), lambda s: s.run.__setitem__(
            "ExposedPorts", {**(s.run.get("ExposedPorts") or {}), **{p: {} for p in ports}}))

    def _i_volume(self, state, ins, env):
        vols = json_list(ins.args)
        vols = [expand(v, env, self.escape) for v in vols] if vols is not None else \
            expand_words(ins.args, env, self.escape)
        if not vols or any(not v.strip() for v in vols):
            raise DockerfileError("VOLUME specified can not be an empty string", ins.line)
        return self._metadata(state, f"VOLUME {json.dumps(vols)}", lambda s: s.run.__setitem__(
            "Volumes", {**(s.run.get("Volumes") or {}), **{v: {} for v in vols}}))

    def _i_stopsignal(self, state, ins, env):
        sig = expand(ins.args.strip(), env, self.escape)
        return self._metadata(state, f"STOPSIGNAL {sig}", lambda s: s.run.__setitem__("StopSignal", sig))

    def _i_onbuild(self, state, ins, env):
        word = ins.args.split(None, 1)[0].upper()
        if word in ("ONBUILD", "FROM", "MAINTAINER"):
            raise DockerfileError(f"{word} isn't allowed as an ONBUILD trigger", ins.line)
        text = ins.args.strip()
        return self._metadata(state, f"ONBUILD {text}", lambda s: s.run.__setitem__(
            "OnBuild", list(s.run.get("OnBuild") or []) + [text]))

    def _i_healthcheck(self, state, ins, env):
        words = ins.args.split(None, 1)
        kind = words[0].upper() if words else ""
        if kind == "NONE":
            hc = {"Test": ["NONE"]}
        elif kind == "CMD":
            rest = words[1] if len(words) > 1 else ""
            form = json_list(rest)
            hc = {"Test": ["CMD", *form] if form is not None else ["CMD-SHELL", rest]}
            for flag, field_ in (("interval", "Interval"), ("timeout", "Timeout"),
                                 ("start-period", "StartPeriod"), ("start-interval", "StartInterval")):
                if flag in ins.flags:
                    hc[field_] = _duration(ins.flags[flag], flag, ins.line)
            if "retries" in ins.flags:
                hc["Retries"] = int(ins.flags["retries"])
        else:
            raise DockerfileError("Unknown type \"" + kind + "\" in HEALTHCHECK (try CMD)", ins.line)
        return self._metadata(state, f"HEALTHCHECK {json.dumps(hc, sort_keys=True)}",
                              lambda s: s.run.__setitem__("Healthcheck", hc))

    def _i_arg(self, state, ins, env):
        (name, default), = key_values(ins.args, env, self.escape, "ARG", ins.line)
        if name in self.opts.build_args:
            value = self.opts.build_args[name]
        elif default is None:
            value = self.meta_defaults.get(name)
        else:
            value = default
        self.used_args.add(name)
        new = self._metadata(state, f"ARG {name}" + (f"={default}" if default is not None else ""), lambda s: None)
        if value is not None:
            new.env_args = {**new.env_args, name: value}
        return new

    # -- RUN: a container --
    def _run_args(self, state: State) -> dict:
        """Build args in scope reach RUN as environment (ENV wins), and change its cache key."""
        declared = dict(state.env_args)
        for k in PROXY_ARGS:
            if k in self.opts.build_args:
                declared[k] = self.opts.build_args[k]
        env_keys = {e.partition("=")[0] for e in state.run.get("Env") or []}
        return {k: v for k, v in declared.items() if k not in env_keys}

    def _i_run(self, state, ins, env):
        if ins.flags.get("network", "default") not in ("default", "none") or "mount" in ins.flags:
            raise BuildError(f"Dockerfile line {ins.line}: RUN --mount and RUN --network need BuildKit")
        argv = self._command(state, ins)
        args = self._run_args(state)
        shown = [a for a in args if a not in PROXY_ARGS]
        prefix = f"|{len(shown)} " + " ".join(f"{k}={args[k]}" for k in sorted(shown)) + " " if shown else ""
        text = prefix + " ".join(argv)
        key = Cache.key(state.image_id, "RUN " + json.dumps(argv), json.dumps(sorted(args.items())))
        hit = self._cached(state, key)
        if hit is not None:
            return self._finish(state, key, hit, hit=True)
        env_list = list(state.run.get("Env") or []) + [f"{k}={v}" for k, v in sorted(args.items())]
        made: list[str] = []

        def prepare(cid: str):
            mounts = self.snap.prepare(cid, state.top(), labels={"build": "1"})
            made.extend(unionfs.add_placeholders(self.snap, cid, files=PLACEHOLDER_FILES,
                                                 dirs=PLACEHOLDER_DIRS))
            wd = state.run.get("WorkingDir")
            if wd and wd != "/":
                self._mkdir_in(cid, wd)
            return mounts

        code, cid = self.run_container(
            argv=argv, env=env_list, user=state.run.get("User") or "", workdir=state.run.get("WorkingDir") or "/",
            image_id=state.image_id or "", image_config=state.run, prepare=prepare, output=self.say,
            network=self.opts.network)
        try:
            if code != 0:
                raise BuildError(f"The command '{' '.join(argv)}' returned a non-zero code: {code}", code)
            self._drop_placeholders(cid, made)
            new = self._commit_layer(state, cid, self._history(text, False))
        except BaseException:
            self.remove_container(cid)
            raise
        if self.opts.rm or self.opts.forcerm:
            self.remove_container(cid)
            self.say(f" ---> Removed intermediate container {_short(cid)}\n")
        return self._finish(state, key, new)

    def _mkdir_in(self, key: str, path: str) -> None:
        """WORKDIR's directory exists before RUN (in this layer), owned by root, 0755."""
        fs = self.snap.fs(key)
        layers = self.snap.layer_dirs(key)
        parts = [p for p in path.split("/") if p]
        for i in range(1, len(parts) + 1):
            sub = "/" + "/".join(parts[:i])
            if unionfs.lookup(layers, sub) is None:
                os.makedirs(fs + sub, mode=0o755, exist_ok=True)

    def _drop_placeholders(self, key: str, made: list[str]) -> None:
        fs = self.snap.fs(key)
        for path in made:
            p = fs + path
            with contextlib.suppress(OSError):
                if os.path.isdir(p) and not os.path.islink(p):
                    os.rmdir(p)
                elif os.path.isfile(p) and os.path.getsize(p) == 0:
                    os.unlink(p)

    def _commit_layer(self, state: State, key: str, history: dict) -> State:
        """The snapshot's changes become a layer blob; the snapshot itself becomes the layer."""
        changes = cow.changes(self.snap, key)
        mappings = self.id_mappings(key)
        if mappings:   # the snapshot is the layer: its files get the ids the step saw, as the tar has them
            cow.restore_container_ids(changes, cow.layer_root(self.snap, key), mappings)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-build-", dir=self.store.root)
        try:
            with os.fdopen(fd, "wb") as out:
                cow.write_layer(changes, cow.layer_root(self.snap, key), out)
            diff_id, size = file_digest(tmp)
            self.store.content.ingest(tmp, diff_id, size)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        new = copy.deepcopy(state)
        new.config.setdefault("rootfs", {"type": "layers", "diff_ids": []})["diff_ids"] = state.diff_ids + [diff_id]
        chain = chain_ids(new.diff_ids)[-1]
        new.layers = list(state.layers) + [{"mediaType": MEDIA_TYPE_LAYER, "digest": diff_id, "size": size}]
        new.config["created"] = history["created"]
        new.config.setdefault("history", []).append(history)
        # Leased until the image names them: a concurrent prune/gc must not take the new layer
        # (nothing is stacked on it yet) or its blob away in between.
        with self.snap.lease(chain), self.store.lease([diff_id]):
            if self.snap.exists(chain):
                self.snap.remove(key)            # the same layer on the same parent exists already
            else:
                self.snap.commit(chain, key, labels={"diff_id": diff_id, "layer_digest": diff_id})
            new.image_id = write_image(self.store, new.config, new.layers).id
        return new

    # -- COPY and ADD --
    def _i_copy(self, state, ins, env):
        return self._copy(state, ins, env, add=False)

    def _i_add(self, state, ins, env):
        return self._copy(state, ins, env, add=True)

    def _copy(self, state: State, ins: Instruction, env: dict, add: bool) -> State:
        words = json_list(ins.args)
        words = [expand(w, env, self.escape) for w in words] if words is not None else \
            expand_words(ins.args, env, self.escape)
        if len(words) < 2:
            raise DockerfileError(f"{ins.cmd} requires at least two arguments", ins.line)
        *sources, dest = words
        workdir = state.run.get("WorkingDir") or "/"
        dest_abs = posixpath.normpath(posixpath.join(workdir, dest))
        if (dest.endswith("/") or dest in (".", "..") or dest.endswith(("/.", "/.."))) and dest_abs != "/":
            dest_abs += "/"             # "." and "dir/" name a directory
        chown, chmod = ins.flags.get("chown", ""), ins.flags.get("chmod", "")
        if chmod:
            try:
                int(chmod, 8)
            except ValueError:
                raise DockerfileError(f"invalid chmod parameter: {chmod}", ins.line)
        src_root, src_desc, cleanup = self._source_root(ins, env)
        try:
            urls = [s for s in sources if add and s.startswith(("http://", "https://"))]
            if urls and ins.flags.get("from"):
                raise DockerfileError("source can't be a URL for COPY --from", ins.line)
            local = [s for s in sources if s not in urls]
            rels = ctx.resolve_sources(src_root, local) if local else []
            fetched = [self._fetch(u, src_root) for u in urls]
            items = [(r, False) for r in rels] + [(f, True) for f in fetched]
            if len(items) > 1 and not dest_abs.endswith("/"):
                raise BuildError(f"When using {ins.cmd} with more than one source file, the destination "
                                 "must be a directory and end with a /")
            sums = src_desc or ",".join(ctx.checksum(src_root, r) for r, _ in items)
            text = f"{ins.cmd} {' '.join(f'--{k}={v}' for k, v in sorted(ins.flags.items()))} " \
                   f"{' '.join(sources)} {dest_abs}".replace("  ", " ")
            key = Cache.key(state.image_id, text, sums)
            hit = self._cached(state, key)
            if hit is not None:
                return self._finish(state, key, hit, hit=True)
            plan = []
            for rel, from_url in items:
                full = os.path.join(src_root, rel)
                extract = add and not from_url and os.path.isfile(full) and not os.path.islink(full) \
                    and _is_archive(full)
                plan.append((full, rel, from_url, extract))
            key_ = f"build-{secrets.token_hex(6)}"
            mounts = self.snap.prepare(key_, state.top(), labels={"build": "1"})
            try:
                with tempfile.TemporaryDirectory(prefix="mdbuild-mnt-") as target:
                    unionfs.run_mounted(mounts, target, _copy_in, plan, dest_abs, chown, chmod,
                                        len(items) == 1)
                created_by = f"/bin/sh -c #(nop) {text.split(' ', 1)[0]} " + \
                    (f"multi:{hashlib.sha256(sums.encode()).hexdigest()}" if len(items) > 1 else
                     f"{'dir' if os.path.isdir(plan[0][0]) else 'file'}:{sums.split(':')[-1][:64]}") + f" in {dest_abs}"
                new = self._commit_layer(state, key_, self._history(created_by, False))
            except BaseException:
                with contextlib.suppress(unionfs.SnapshotError):
                    self.snap.remove(key_)
                raise
            return self._finish(state, key, new)
        finally:
            cleanup()

    def _source_root(self, ins: Instruction, env: dict):
        """(directory to copy from, a cache description or "", cleanup) for COPY [--from]."""
        ref = ins.flags.get("from")
        if not ref:
            return self.context, "", lambda: None
        ref = expand(ref, env, self.escape)
        stage = None
        for i, st in self.stage_results.items():
            if self.stage_names.get(i) == ref.lower() or str(i) == ref:
                stage = st
        if stage is None:
            stage = self._base_image(ref)
        key = f"build-from-{secrets.token_hex(6)}"
        top = stage.top()
        target = tempfile.mkdtemp(prefix="mdbuild-from-")
        if top is None:
            return target, f"image:{stage.image_id}", lambda: shutil.rmtree(target, ignore_errors=True)
        mounts = self.snap.view(key, top)
        # The source tree is copied out once (a view mounted in a child; see run_mounted).
        try:
            os.mkdir(os.path.join(target, "mnt"))
            unionfs.run_mounted(mounts, os.path.join(target, "mnt"), _copy_out, os.path.join(target, "tree"))
        except BaseException:
            self.snap.remove(key)
            shutil.rmtree(target, ignore_errors=True)
            raise
        self.snap.remove(key)

        def cleanup():
            shutil.rmtree(target, ignore_errors=True)
        return os.path.join(target, "tree"), "", cleanup     # checksums of the files, as for the context

    def _fetch(self, url: str, into: str) -> str:
        """ADD <url>: download into the context's scratch area; name from the URL's path."""
        name = posixpath.basename(urllib.parse.urlparse(url).path) or "index.html"
        d = tempfile.mkdtemp(prefix=".add-url-", dir=into)
        try:
            with urllib.request.urlopen(url, timeout=30) as r, open(os.path.join(d, name), "wb") as f:
                shutil.copyfileobj(r, f)
        except OSError as e:
            raise BuildError(f"failed to fetch {url}: {e}")
        os.chmod(os.path.join(d, name), 0o600)
        return os.path.relpath(os.path.join(d, name), into)


def _host_arch() -> str:
    m = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def _short(image_id: str) -> str:
    return image_id.split(":")[-1][:12]


def _duration(text: str, flag: str, line: int) -> int:
    units = {"ns": 1, "us": 1000, "ms": 10 ** 6, "s": 10 ** 9, "m": 60 * 10 ** 9, "h": 3600 * 10 ** 9}
    import re
    total, rest = 0, text
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)", text):
        total += int(float(num) * units[unit])
        rest = rest.replace(num + unit, "", 1)
    if rest or not text:
        raise DockerfileError(f"--{flag}: time: invalid duration \"{text}\"", line)
    return total


def _is_archive(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            with tarfile.open(fileobj=uncompressed_stream(f), mode="r|") as t:
                return t.next() is not None
    except Exception:  # noqa: BLE001 - anything that is not a tar is copied as a file
        return False


# ---- inside the mounted snapshot (a forked child, see unionfs.run_mounted) -------------------------

def in_root(root: str, path: str, follow_last: bool = True, _hops: int = 0) -> str:
    """``path`` inside ``root`` with symlinks resolved *as the container would* (an absolute link
    target restarts at ``root``), so that a link in the image cannot send a write to the host."""
    parts = [p for p in path.split("/") if p and p != "."]
    cur = root
    for i, name in enumerate(parts):
        if name == "..":
            cur = os.path.dirname(cur) if cur != root else root
            continue
        nxt = os.path.join(cur, name)
        last = i == len(parts) - 1
        if os.path.islink(nxt) and (follow_last or not last):
            if _hops > 40:
                raise OSError(f"too many levels of symbolic links: {path}")
            link = os.readlink(nxt)
            base = "" if link.startswith("/") else os.path.relpath(cur, root)
            nxt = in_root(root, posixpath.join("/", base, link), True, _hops + 1)
        cur = nxt
    return cur


def _ids(root: str, spec: str) -> tuple[int, int]:
    """--chown user[:group], names looked up in the image's /etc/passwd and /etc/group."""
    user, _, group = spec.partition(":")

    def entry(name: str, path: str) -> list[str]:
        try:
            with open(in_root(root, path)) as f:
                for line in f:
                    parts = line.rstrip("\n").split(":")
                    if parts[0] == name and len(parts) > 3:
                        return parts
        except OSError:
            pass
        raise ValueError(f"unable to convert uid/gid chown string to host mapping: "
                         f"can't find uid for user {name}: no such user: {name}")
    uid = int(user) if user.isdigit() else int(entry(user, "/etc/passwd")[2])
    if group:
        gid = int(group) if group.isdigit() else int(entry(group, "/etc/group")[2])
    else:
        gid = uid if user.isdigit() else int(entry(user, "/etc/passwd")[3])
    return uid, gid


def _copy_in(target: str, plan, dest: str, chown: str, chmod: str, single: bool) -> None:
    """Copy the sources into the mounted rootfs ``target`` (a forked child's private mount),
    docker's rules: a directory's *contents* go into dest; a file goes to dest, or into it if dest
    ends in / or is an existing directory; ADD's local archives are extracted into dest."""
    uid, gid = _ids(target, chown) if chown else (0, 0)
    mode = int(chmod, 8) if chmod else None

    def own(path):
        os.lchown(path, uid, gid)
        if mode is not None and not os.path.islink(path):
            os.chmod(path, mode)

    def makedirs(rel):
        host = in_root(target, rel)
        if not os.path.isdir(host):
            makedirs(posixpath.dirname(rel.rstrip("/")) or "/")
            os.mkdir(in_root(target, rel), 0o755)
        return in_root(target, rel)

    for full, rel, from_url, extract in plan:
        if os.path.isdir(full) and not os.path.islink(full):
            base = makedirs(dest.rstrip("/") or "/")
            for dirpath, dirnames, filenames in os.walk(full):
                sub = os.path.relpath(dirpath, full)
                out_dir = base if sub == "." else os.path.join(base, sub)
                if sub != ".":
                    if not os.path.isdir(out_dir):
                        os.mkdir(out_dir)
                    shutil.copystat(dirpath, out_dir)
                    own(out_dir)
                for n in dirnames:
                    if os.path.islink(os.path.join(dirpath, n)):
                        _copy_entry(os.path.join(dirpath, n), os.path.join(out_dir, n))
                        own(os.path.join(out_dir, n))
                dirnames[:] = [n for n in dirnames if not os.path.islink(os.path.join(dirpath, n))]
                for n in filenames:
                    _copy_entry(os.path.join(dirpath, n), os.path.join(out_dir, n))
                    own(os.path.join(out_dir, n))
            continue
        if extract:
            base = makedirs(dest.rstrip("/") or "/")
            with open(full, "rb") as f, tarfile.open(fileobj=uncompressed_stream(f), mode="r|") as t:
                t.extractall(base, numeric_owner=True, filter="tar")
            continue
        if dest.endswith("/") or (single and os.path.isdir(in_root(target, dest))):
            out_rel = posixpath.join(dest, os.path.basename(rel))
        else:
            out_rel = dest
        parent = makedirs(posixpath.dirname(out_rel.rstrip("/")) or "/")
        out = os.path.join(parent, posixpath.basename(out_rel.rstrip("/")))
        if os.path.isdir(out) and not os.path.islink(out):
            shutil.rmtree(out)
        _copy_entry(full, out)
        own(out)


def _copy_entry(src: str, out: str) -> None:
    if os.path.lexists(out) and not (os.path.isdir(out) and not os.path.islink(out)):
        os.unlink(out)
    if os.path.islink(src):
        os.symlink(os.readlink(src), out)
    else:
        shutil.copy2(src, out)


def _copy_out(target: str, into: str) -> None:
    """COPY --from: the source stage's tree, copied out of its mounted view (symlinks kept)."""
    shutil.copytree(target, into, symlinks=True)

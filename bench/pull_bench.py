"""Benchmark ``pullrun``: pull a one-layer ~100 MB / 5,000-file image from a local registry, then run
it once — issue 11's shape — minidocker against ``skopeo copy`` + ``umoci unpack`` and ``tar -xzf``.

The layer holds unpack_bench's 5,000 generated files (seed 5, ~100 MB, gzip level 6) plus a static
busybox as ``/bin/busybox`` and ``/bin/true``, so the image can run ``true``. It is pushed once to a
local registry (Debian's docker-registry, or minidocker's own server) on 127.0.0.1. Contenders, each
timed whole, each run into an empty destination (emptying it is not timed):

* ``minidocker pull + run --rm``: ``minidocker pull H/bench/one:1 && minidocker run --rm
  H/bench/one:1 true`` against the benchmark's own minidockerd (the layer is extracted once, while it
  downloads, into its committed snapshot; ``run`` only prepares an empty writable layer). Between runs
  ``minidocker rmi`` removes the image, its blob and its snapshot (not timed).
* ``minidocker pull``: the pull alone.
* ``skopeo copy``: the transfer into an OCI layout (Go).
* ``skopeo copy + umoci unpack``: the transfer, then umoci's unpack into a runtime bundle.
* ``tar -xzf (the layer, local)``: the floor: extracting the same blob from a local file.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def make_layer(dest: Path) -> tuple[Path, bytes]:
    """The gzip layer (files + busybox) at ``dest``; returns (path, uncompressed tar)."""
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(HERE.parent))
    from unpack_bench import layer_tar, make_files
    from minidocker.images.busybox import DEFAULT_BUSYBOX

    def busybox(tar: tarfile.TarFile) -> None:
        tar.add(DEFAULT_BUSYBOX, "bin/busybox")
        link = tarfile.TarInfo("bin/true")
        link.type, link.linkname, link.mode, link.mtime = tarfile.SYMTYPE, "busybox", 0o777, 1_600_000_000
        tar.addfile(link)
    raw = layer_tar(make_files(), more=busybox, dirs={"bin"})
    dest.write_bytes(gzip.compress(raw, compresslevel=6, mtime=0))
    return dest, raw


def push_image(ws, host: str, layer: Path, raw: bytes) -> None:
    from minidocker.images.store import ImageStore, sha256_digest
    from minidocker.registry.client import Registry
    store = ImageStore(str(ws.path("pullrun-source")))
    blob = layer.read_bytes()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["true"]},
                         "rootfs": {"type": "layers", "diff_ids": [sha256_digest(raw)]}}).encode()
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": store.content.put(config), "size": len(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": store.content.put(blob), "size": len(blob)}]}
    image = store.add_image(json.dumps(manifest).encode(), "bench/one:1")
    Registry(host).push("bench/one", "1", store, image)


def bench(ws, args, run) -> list:
    """``run`` is bench/run.py (its Workspace helpers, Measurement, run_once, the daemon)."""
    layer, raw = make_layer(ws.path("pullrun") / "layer.tar.gz")
    host = run.start_local_registry(ws)
    push_image(ws, host, layer, raw)
    print(f"  image: 1 layer, {layer.stat().st_size / 1e6:.0f} MB compressed, "
          f"{len(raw) / 1e6:.0f} MB uncompressed (5,000 files and busybox), on {host}", file=sys.stderr)
    ref = f"{host}/bench/one:1"
    md_host, why = run.start_minidockerd(ws)
    cli = run.venv_tool("minidocker")
    env = run.python_env(MINIDOCKER_HOST=md_host or "")
    skopeo, umoci = shutil.which("skopeo"), shutil.which("umoci")
    src = f"docker://{host}/bench/one:1"

    def rmi(_dest: str) -> None:
        subprocess.run([cli, "rmi", "-f", ref], env=env, capture_output=True)

    contenders = [
        ("minidocker pull + run --rm",
         lambda d: ["sh", "-c", f'"$0" pull -q {ref} >/dev/null && "$0" run --rm {ref} true', cli],
         md_host and cli, why, rmi),
        ("minidocker pull", lambda d: [cli, "pull", "-q", ref], md_host and cli, why, rmi),
        ("skopeo copy", lambda d: [skopeo, "copy", "-q", "--src-tls-verify=false", src, f"oci:{d}:one"],
         skopeo, "skopeo missing (bash bench/setup.sh)", None),
        ("skopeo copy + umoci unpack",
         lambda d: ["sh", "-c", f'"$0" copy -q --src-tls-verify=false {src} oci:{d}:one '
                                f'&& "$1" unpack --image {d}:one {d}-bundle', skopeo, umoci],
         skopeo and umoci, "skopeo/umoci missing (bash bench/setup.sh)", None),
        ("tar -xzf (the layer, local)", lambda d: ["sh", "-c", f'mkdir "$0" && tar -xzf "$1" -C "$0"', d, str(layer)],
         True, "", None),
    ]
    results = []
    for name, argv_for, available, why_not, reset in contenders:
        m = run.Measurement(name, " ".join(argv_for("DEST")))
        if not available:
            m.status, m.why = "unavailable" if "minidocker" in name else "not installed", why_not
            results.append(m)
            continue
        if reset:
            reset("")
        try:
            for i in range(args.warmup + args.runs):
                dest = str(ws.dir / f"pullrun-{name.split()[0]}-{i}")
                ms = run.run_once(argv_for(dest), env, timeout=300)
                if i >= args.warmup:
                    m.samples_ms.append(round(ms, 3))
                for d in (dest, dest + "-bundle"):
                    shutil.rmtree(d, ignore_errors=True)
                if reset:
                    reset(dest)
        except run.CommandFailed as e:
            m.status, m.why = "failed", str(e)[:300]
        results.append(run.summarize(m))
        print(f"  {m.name}: {m.status}" + (f" ({m.median_ms} ms)" if m.median_ms else ""), file=sys.stderr)
    return results

"""Benchmark ``unpack``: extracting an image's layers, minidocker's safe applier vs ``tar -xzf`` and
``umoci unpack``.

The image is generated (deterministically, seed 5): ~100 MB in 5,000 files (half random bytes,
half compressible text, 1 KB to 40 KB each) under a few hundred directories, gzip-compressed. Two
shapes of the same files:

* one layer (``tar -xzf`` of one .tar.gz is the floor);
* four layers of 1,250 files each: ``tar -xzf`` runs them one after the other, minidocker once
  sequentially and once with :func:`apply_layers_parallel` (each layer into its own snapshot
  directory, as the store does), umoci applies the four into one rootfs (its only mode).

Each run extracts into a fresh directory; creating and removing it is not timed. Every command is
timed whole (minidocker's includes Python's start-up, ~30 ms).
"""
from __future__ import annotations

import gzip
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FILES, LAYERS, SEED = 5000, 4, 5

WORKER = """
import sys, time
from minidocker.images.layers import apply_layer, apply_layers_parallel
mode, dest, layers = sys.argv[1], sys.argv[2], sys.argv[3:]
jobs = [(layer, f"{dest}/{n}") for n, layer in enumerate(layers)]
import os
for _, d in jobs:
    os.makedirs(d)
if mode == "parallel":
    apply_layers_parallel(jobs, whiteouts="overlay")
else:
    for layer, d in jobs:
        apply_layer(layer, d, whiteouts="overlay")
"""


def make_files(seed: int = SEED) -> list[tuple[str, bytes]]:
    rnd = random.Random(seed)
    words = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(3, 9)))
             for _ in range(500)]
    files = []
    for n in range(FILES):
        size = rnd.randint(1_000, 40_000)
        if n % 2:
            data = rnd.randbytes(size)
        else:
            data = b" ".join(rnd.choice(words) for _ in range(size // 6))[:size]
        files.append((f"usr/share/d{n % 250:03d}/s{n % 7}/file{n:05d}", data))
    return sorted(files)  # as a tar of a directory tree is: grouped by directory


def write_layer(path: Path, files: list[tuple[str, bytes]]) -> bytes:
    """A gzip layer of ``files`` (with their directories); returns the uncompressed tar."""
    raw = layer_tar(files)
    path.write_bytes(gzip.compress(raw, compresslevel=6, mtime=0))
    return raw


def layer_tar(files: list[tuple[str, bytes]], more=None, dirs: set[str] = frozenset()) -> bytes:
    """The uncompressed tar of ``files``, their directories and ``dirs`` in tree order;
    ``more(tar)`` may add entries at the end."""
    buf = io.BytesIO()
    dirs = {p for name, _ in files for p in _prefixes(os.path.dirname(name))} | set(dirs)
    entries = sorted([(d, None) for d in dirs] + list(files))  # tree order, as `tar c` writes
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries:
            ti = tarfile.TarInfo(name)
            ti.mode, ti.mtime = (0o755 if data is None else 0o644), 1_600_000_000
            if data is None:
                ti.type = tarfile.DIRTYPE
                tar.addfile(ti)
            else:
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
        if more:
            more(tar)
    return buf.getvalue()


def _prefixes(d: str) -> list[str]:
    parts = d.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def oci_layout(dest: Path, layers: list[Path], raws: list[bytes]) -> None:
    """An OCI layout of these gzip layers (for umoci), through minidocker's own store."""
    sys.path.insert(0, str(REPO))
    from minidocker.images.archive import export_layout
    from minidocker.images.store import ImageStore, sha256_digest
    store = ImageStore(str(dest.parent / (dest.name + "-store")))
    descs = []
    for layer in layers:
        data = layer.read_bytes()
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                      "digest": store.content.put(data), "size": len(data)})
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha256_digest(r) for r in raws]},
                         "config": {}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": store.content.put(config), "size": len(config)},
                           "layers": descs}).encode()
    store.add_image(manifest, "bench:latest")
    export_layout(store, ["bench:latest"], str(dest))
    shutil.rmtree(store.root)


def timed_runs(argv_for, runs: int, warmup: int, scratch: Path, fresh_dir: bool = True) -> list[float]:
    """Run ``argv_for(target)`` into a new target each time; time only the command."""
    samples = []
    for i in range(warmup + runs):
        target = scratch / f"t{i}"
        if fresh_dir:
            target.mkdir()
        t0 = time.perf_counter()
        p = subprocess.run(argv_for(target), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           cwd=REPO, timeout=600)
        ms = (time.perf_counter() - t0) * 1000
        shutil.rmtree(target, ignore_errors=True)
        if p.returncode != 0:
            raise RuntimeError(p.stderr.decode(errors="replace")[-300:])
        if i >= warmup:
            samples.append(round(ms, 2))
    return samples


def bench(ws, args, run) -> list:
    """``run`` is bench/run.py (Measurement, summarize)."""
    d = Path(ws.path("unpack"))
    d.mkdir(parents=True, exist_ok=True)
    print("  generating the image (100 MB, 5,000 files)...", file=sys.stderr)
    files = make_files()
    one = d / "one.tar.gz"
    raw_one = write_layer(one, files)
    parts = [d / f"part{n}.tar.gz" for n in range(LAYERS)]
    raws = [write_layer(p, files[n::LAYERS]) for n, p in enumerate(parts)]
    print(f"  one layer: {len(raw_one) / 1e6:.0f} MB uncompressed, {one.stat().st_size / 1e6:.0f} MB gzip",
          file=sys.stderr)
    umoci = shutil.which("umoci")
    if umoci:
        oci_layout(d / "layout1", [one], [raw_one])
        oci_layout(d / "layout4", parts, raws)
    py = sys.executable
    scratch = d / "scratch"
    scratch.mkdir()
    tar_all = " && ".join(f"mkdir -p $T/{n} && tar -xzf {p} -C $T/{n}" for n, p in enumerate(parts))
    cases = [
        ("tar -xzf (1 layer)", lambda t: ["tar", "-xzf", str(one), "-C", str(t)], True),
        ("minidocker (1 layer)", lambda t: [py, "-c", WORKER, "sequential", str(t), str(one)], True),
        ("umoci unpack (1 layer)", (lambda t: [umoci, "unpack", "--image", f"{d}/layout1:latest", str(t)])
         if umoci else None, False),
        ("tar -xzf (4 layers, one by one)", lambda t: ["sh", "-c", tar_all.replace("$T", str(t))], True),
        ("minidocker (4 layers, sequential)",
         lambda t: [py, "-c", WORKER, "sequential", str(t), *map(str, parts)], True),
        ("minidocker (4 layers, parallel)",
         lambda t: [py, "-c", WORKER, "parallel", str(t), *map(str, parts)], True),
        ("umoci unpack (4 layers)", (lambda t: [umoci, "unpack", "--image", f"{d}/layout4:latest", str(t)])
         if umoci else None, False),
    ]
    results = []
    for name, argv_for, fresh in cases:
        m = run.Measurement(name)
        if argv_for is None:
            m.status, m.why = "not installed", "bash bench/setup.sh"
        else:
            m.command = " ".join(argv_for(scratch / "TARGET"))[:200]
            try:
                m.samples_ms = timed_runs(argv_for, args.runs, args.warmup, scratch, fresh)
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                m.status, m.why = "failed", str(e)[:300]
        results.append(run.summarize(m))
        print(f"  {name}: {m.status}" + (f" ({m.median_ms} ms)" if m.median_ms else ""), file=sys.stderr)
    return results

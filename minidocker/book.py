"""The course, rendered: run every notebook and write what it showed into ``docs/book/`` (``make book``).

A reader of the repository should see every chapter with its outputs and diagrams without running
anything (running needs root on a throwaway VM). This executes each ``notebooks/NN-*.ipynb`` exactly
as ``tests/test_notebooks.py`` does (nbclient, the notebook's own kernel, cwd ``notebooks/``), then
writes with nbconvert

* ``docs/book/NN-topic.md``   — Markdown, which GitHub renders (outputs as text, diagrams as images);
* ``docs/book/NN-topic.html`` — the same as a small stand-alone HTML page (no embedded notebook CSS);
* ``docs/book/NN-topic/``     — the SVG diagrams it displayed, as files (never base64 inside a page);
* ``docs/book/README.md`` and ``index.html`` — the table of contents; ``book.json`` — its structure;

and refreshes the curated gallery ``diagrams/gallery/`` (``diagrams/README.md``): one diagram per
concept, taken from what the chapters drew from live state, plus "how a container starts", a
timeline drawn from ``minidocker run --explain`` against a throwaway daemon (own root, socket and
cgroup parent).

Long text outputs are cut (``MAX_LINES``) so that the committed book stays small. The suite checks only
the book's *structure* (``structure`` vs ``book.json``: the same notebooks, the same cells, every page
and figure present), never its bytes: outputs (pids, digests, timings) change on every run.

    python -m minidocker.book                 # everything (as root): what `make book` runs
    python -m minidocker.book 03 10           # only these chapters (the others' pages stay)
"""
from __future__ import annotations

import argparse
import glob
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOOK = os.path.join(REPO, "docs", "book")
GALLERY = os.path.join(REPO, "diagrams", "gallery")
MAX_LINES = 40          # per text output in the book
TIMEOUT = 300           # per cell, seconds

#: The gallery: file name -> (title, the chapter diagram it is, in diagrams/ after the run).
GALLERY_PICKS = {
    "namespaces": ("Namespaces: who shares which with whom", "01-namespaces"),
    "mount-tree": ("A container's mount tree", "02-container-mounts"),
    "cgroup-tree": ("A cgroup tree with limits and usage", "03-cgroup-tree"),
    "layer-stack": ("An overlay layer stack: which layer a path comes from", "04-layer-stack"),
    "image-chain": ("An image: manifest, config, layers, DiffIDs, ChainIDs, snapshots", "06-image-chain"),
    "registry-conversation": ("A pull, request by request", "07-pull-sequence"),
    "daemon-state-machine": ("The container state machine, with live containers", "08-state-machine"),
    "defences": ("Which security layer stops which attack", "10-defences"),
    "network-topology": ("A user network from live netlink state: namespaces, veths, bridge, rules",
                         "11-topology-minidocker"),
    "volume-mounts": ("A container's mounts: its layers, a bind and a named volume", "12-container-mounts"),
    "build-stages": ("A multi-stage build: its stages and what each copies from another", "nb13-stages"),
    "kernel-calls": ("Python to the kernel: ctypes, errno, the recording twin", "00-kernel-calls"),
}
TIMELINE = ("container-start", "How a container starts (minidocker run --explain)")


def notebooks() -> list[str]:
    return sorted(glob.glob(os.path.join(REPO, "notebooks", "[0-9][0-9]-*.ipynb")))


def stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def structure(nb: dict) -> list[str]:
    """What the book must agree on with a notebook: its cells, in order, by type and id."""
    return [f"{c['cell_type']}:{c.get('id', '')}" for c in nb["cells"]]


def title(nb: dict) -> str:
    first = "".join(nb["cells"][0]["source"]).splitlines()[0] if nb["cells"] else ""
    return first.lstrip("# ").strip()


# ---------------------------------------------------------------------------------------- rendering
def execute(path: str):
    """Run a notebook as the suite does; return it with outputs (raises naming the failing cell)."""
    import nbclient
    import nbformat
    nb = nbformat.read(path, as_version=4)
    os.environ["PYTHONPATH"] = REPO + os.pathsep + os.environ.get("PYTHONPATH", "")
    nbclient.NotebookClient(nb, timeout=TIMEOUT, kernel_name=nb.metadata.kernelspec.name,
                            resources={"metadata": {"path": os.path.dirname(path)}}).execute()
    return nb


def _trim(nb) -> None:
    """Cut long text outputs; drop what a static page cannot use (widgets, javascript)."""
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        for o in c.get("outputs", []):
            if o.get("output_type") == "stream":
                o["text"] = _cut(o["text"])
            data = o.get("data", {})
            for k in [k for k in data if k.startswith("application/") and "json" not in k]:
                del data[k]
            if "text/plain" in data:
                data["text/plain"] = _cut(data["text/plain"])


def _cut(text: str) -> str:
    lines = text.splitlines(True)
    if len(lines) <= MAX_LINES:
        return text
    return "".join(lines[:MAX_LINES]) + f"… ({len(lines) - MAX_LINES} more lines: run the notebook)\n"


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{max-width:60rem;margin:auto;padding:1rem;font-family:sans-serif;line-height:1.45}}
pre{{background:#f6f8fa;padding:.5rem;overflow-x:auto}} .jp-InputArea pre, .input pre{{background:#eef}}
img{{max-width:100%}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:2px 6px}}
details{{background:#fffbe6;padding:.3rem}}</style></head>
<body><p><a href="index.html">the book</a> · <a href="../../diagrams/README.md">gallery</a> ·
<a href="../../notebooks/{name}.ipynb">the notebook</a></p>
{body}
</body></html>
"""


def render(nb, name: str, out: str = BOOK) -> list[str]:
    """Write NAME.md, NAME.html and NAME/*.svg from an executed notebook; return the figure names."""
    from nbconvert import HTMLExporter, MarkdownExporter
    _trim(nb)
    figdir = os.path.join(out, name)
    shutil.rmtree(figdir, ignore_errors=True)
    os.makedirs(figdir, exist_ok=True)
    figures = []
    for i, c in enumerate(nb.cells):
        for k, o in enumerate(c.get("outputs", []) if c.cell_type == "code" else []):
            svg = o.get("data", {}).get("image/svg+xml")
            if svg is None:
                continue
            fig = f"cell{i:02}-{k}.svg"
            _write(os.path.join(figdir, fig), svg if isinstance(svg, str) else "".join(svg))
            figures.append(fig)
            # The page links the file (a picture GitHub shows, never base64 inside the page).
            o["data"] = {"text/markdown": f"![diagram]({name}/{fig})",
                         "text/html": f'<img src="{name}/{fig}" alt="diagram">'}
            o.setdefault("metadata", {})
    head = (f"[the book](README.md) · [gallery](../../diagrams/README.md) · "
            f"[the notebook](../../notebooks/{name}.ipynb) · rendered by `make book`\n\n")
    text, _ = MarkdownExporter().from_notebook_node(nb)
    _write(os.path.join(out, f"{name}.md"), head + _relink(text))
    body, _ = HTMLExporter(template_name="basic").from_notebook_node(nb)
    body = _relink(body)
    _write(os.path.join(out, f"{name}.html"), _PAGE.format(title=html.escape(title(nb)), name=name, body=body))
    return figures


def _relink(text: str) -> str:
    """The notebook's relative links (from notebooks/) as seen from docs/book/."""
    text = re.sub(r'(\]\(|href=")\.\./', r"\1../../", text)
    return re.sub(r'(\]\(|href=")\.\./\.\./docs/book/', r"\1", text)


def _write(path: str, text: str) -> None:
    from .util import atomic_write
    atomic_write(path, text.encode(), fsync=False)


def write_index(entries: dict, out: str = BOOK) -> None:
    """book.json (the structure the suite checks), README.md and index.html (the table of contents)."""
    _write(os.path.join(out, "book.json"), json.dumps(entries, indent=1, sort_keys=True) + "\n")
    rows = [(name, e["title"], e["figures"]) for name, e in sorted(entries.items())]
    md = ["# The course, rendered", "",
          "Every chapter's notebook, run top to bottom as root by `make book` and rendered with its outputs",
          "and diagrams (long outputs cut). To run them yourself: README.md, *Start here*. The curated",
          "diagrams: [diagrams/README.md](../../diagrams/README.md).", ""]
    md += [f"* [{t}]({n}.md) ([html]({n}.html), {len(f)} diagram{'s' * (len(f) != 1)})" for n, t, f in rows]
    _write(os.path.join(out, "README.md"), "\n".join(md) + "\n")
    items = "\n".join(f'<li><a href="{n}.html">{html.escape(t)}</a> ({len(f)} diagrams)</li>' for n, t, f in rows)
    _write(os.path.join(out, "index.html"), _PAGE.format(
        title="The course, rendered", name="", body=f"<h1>The course, rendered</h1><ul>{items}</ul>")
        .replace('<a href="../../notebooks/.ipynb">the notebook</a>', ""))


# ------------------------------------------------------------------------------------------ gallery
def explain_transcript() -> str:
    """`minidocker run --explain busybox ...` against a throwaway daemon of our own."""
    work = tempfile.mkdtemp(prefix="md-book-")
    sock = os.path.join(work, "api.sock")
    parent = f"minidocker-book-{os.getpid()}"
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with open(os.path.join(work, "daemon.log"), "wb") as log:
        daemon = subprocess.Popen([sys.executable, "-m", "minidocker.daemon.main", "--root",
                                   os.path.join(work, "root"), "-H", "unix://" + sock,
                                   "--cgroup-parent", parent], stdout=log, stderr=log, env=env)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(sock):   # the daemon creates the socket once it serves
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"minidockerd did not start: {work}/daemon.log")
            time.sleep(0.05)
        cli = [sys.executable, "-m", "minidocker.cli.main", "-H", "unix://" + sock]
        subprocess.run([*cli, "pull", "busybox"], check=True, capture_output=True, env=env)
        r = subprocess.run([*cli, "run", "--explain", "--memory", "64m", "--hostname", "box", "busybox",
                            "echo", "hello"], check=True, capture_output=True, text=True, env=env)
        return r.stdout
    finally:
        daemon.terminate()
        daemon.wait(30)
        for d in glob.glob(f"/sys/fs/cgroup/*/{parent}") + glob.glob(f"/sys/fs/cgroup/{parent}"):
            os.rmdir(d)
        shutil.rmtree(work, ignore_errors=True)


def write_gallery(drawn: str = os.path.join(REPO, "diagrams")) -> list[str]:
    """Copy the picked chapter diagrams into diagrams/gallery/, draw the timeline, write the index."""
    from .diagrams import timeline
    os.makedirs(GALLERY, exist_ok=True)
    lines = ["# The gallery", "",
             "One picture per idea, each drawn by `minidocker/diagrams/` from live state while the chapters",
             "ran (`make book` refreshes them). The chapters, rendered with all their diagrams:",
             "[docs/book/](../docs/book/README.md).", ""]
    missing = []
    for name, (caption, source) in GALLERY_PICKS.items():
        src = os.path.join(drawn, f"{source}.svg")
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(GALLERY, f"{name}.svg"))
        elif not os.path.exists(os.path.join(GALLERY, f"{name}.svg")):
            missing.append(source)
            continue
        chapter = source[:2]
        lines += [f"## {caption}", "", f"![{caption}](gallery/{name}.svg)", "",
                  f"From chapter {chapter}: [rendered](../docs/book/{_chapter_stem(chapter)}.md).", ""]
    name, caption = TIMELINE
    transcript = explain_transcript()
    timeline.render_to(timeline.timeline_graph(transcript), os.path.join(GALLERY, f"{name}.svg"))
    lines += [f"## {caption}", "", f"![{caption}](gallery/{name}.svg)", "",
              "Drawn from the transcript `minidocker run --explain --memory 64m busybox echo hello` prints:",
              "the monitor makes the namespaces and the cgroup, pid 1 builds its root filesystem, pivots",
              "into it and execs (chapters 1–3, 9).", ""]
    _write(os.path.join(REPO, "diagrams", "README.md"), "\n".join(lines))
    return missing


def _chapter_stem(number: str) -> str:
    found = [stem(p) for p in notebooks() if stem(p).startswith(number + "-")]
    return found[0] if found else number


# --------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m minidocker.book", description=__doc__.split("\n")[0])
    ap.add_argument("chapters", nargs="*", help="chapter numbers to (re)render (default: all)")
    ap.add_argument("--no-gallery", action="store_true", help="do not refresh diagrams/gallery/")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("make book runs every notebook: it needs root (a throwaway VM, as the notebooks do)", file=sys.stderr)
        return 1
    os.makedirs(BOOK, exist_ok=True)
    index_path = os.path.join(BOOK, "book.json")
    entries = json.load(open(index_path)) if os.path.exists(index_path) else {}
    present = {stem(p) for p in notebooks()}
    entries = {k: v for k, v in entries.items() if k in present}
    failed = []
    for path in notebooks():
        name = stem(path)
        if a.chapters and name[:2] not in a.chapters:
            continue
        started = time.monotonic()
        print(f"{name}: running ...", flush=True)
        try:
            nb = execute(path)
        except Exception as e:   # noqa: BLE001 — report every chapter, then fail
            failed.append(name)
            print(f"{name}: FAILED: {str(e).strip().splitlines()[-1] if str(e).strip() else e!r}", flush=True)
            continue
        figures = render(nb, name)
        with open(path) as f:
            raw = json.load(f)
        entries[name] = {"title": title(raw), "cells": structure(raw), "figures": figures}
        print(f"{name}: {len(figures)} diagrams, {time.monotonic() - started:.0f} s", flush=True)
    for stale in set(os.listdir(BOOK)) - {f for n in entries for f in (n, n + ".md", n + ".html")} \
            - {"README.md", "index.html", "book.json"}:
        p = os.path.join(BOOK, stale)
        shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
    write_index(entries)
    if not a.no_gallery:
        missing = write_gallery()
        if missing:
            print("gallery: not drawn (their chapters did not run):", ", ".join(missing))
    if failed:
        print("book: these notebooks failed (their old pages were kept):", ", ".join(failed), file=sys.stderr)
        return 1
    print(f"book: {len(entries)} chapters in {os.path.relpath(BOOK, REPO)}; commit docs/book/ and diagrams/")
    return 0


if __name__ == "__main__":
    sys.exit(main())

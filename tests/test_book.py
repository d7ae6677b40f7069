"""The committed book (docs/book/, `make book`) and gallery (diagrams/) agree with the notebooks in
*structure*: every notebook has a rendered page whose cells are the notebook's cells (type and id, in
order), every figure the book lists exists as an SVG file, the gallery's pictures exist and are linked.
Never byte-identical output: pids, digests and timings differ on every run.

When a notebook is added or its cells change, these fail with what to do: run `make book` (as root)
and commit docs/book/ and diagrams/ (docs/COURSE.md, "The book")."""
from __future__ import annotations

import json
import os
import re

import pytest

from conftest import REPO
from minidocker import book

RUN = "run `make book` (as root; `make book CHAPTERS=NN` for one chapter) and commit docs/book/ and diagrams/"
NOTEBOOKS = book.notebooks()
IDS = [book.stem(p) for p in NOTEBOOKS]
# Notebooks whose owners have not yet added the "What you will see" line (docs/COURSE.md §2.4): the
# test on them is expected to fail (strict: once the line is there, delete the entry here).
LINK_PENDING: dict[str, str] = {}
MAX_PAGE = 400_000     # bytes: a page with embedded images or a runaway output would be larger


def _index() -> dict:
    path = os.path.join(book.BOOK, "book.json")
    assert os.path.exists(path), f"no docs/book/book.json: {RUN}"
    with open(path) as f:
        return json.load(f)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_every_notebook_has_a_rendered_page_with_the_same_cells(path):
    name = book.stem(path)
    entry = _index().get(name)
    assert entry is not None, f"notebooks/{name}.ipynb has no rendered page in docs/book/: {RUN}"
    with open(path) as f:
        cells = book.structure(json.load(f))
    assert entry["cells"] == cells, (f"docs/book/{name} was rendered from other cells than "
                                     f"notebooks/{name}.ipynb has now ({len(entry['cells'])} vs {len(cells)}): {RUN}")
    for ext in (".md", ".html"):
        page = os.path.join(book.BOOK, name + ext)
        assert os.path.exists(page), f"docs/book/{name}{ext} is missing: {RUN}"
        size = os.path.getsize(page)
        assert size < MAX_PAGE, f"docs/book/{name}{ext} is {size} bytes: embedded images or a long output?"
        with open(page) as f:
            text = f.read()
        assert not re.search(r"data:image/[\w+.-]+;base64,", text), f"docs/book/{name}{ext} embeds an image: figures belong in docs/book/{name}/"
    assert entry["figures"], f"docs/book/{name}: the notebook displayed no diagram"
    with open(os.path.join(book.BOOK, name + ".md")) as f:
        page = f.read()
    for fig in entry["figures"]:
        assert os.path.exists(os.path.join(book.BOOK, name, fig)), f"docs/book/{name}/{fig} is missing: {RUN}"
        assert f"{name}/{fig}" in page, f"docs/book/{name}.md does not show {fig}"


def test_the_book_lists_no_notebook_that_is_gone():
    gone = sorted(set(_index()) - set(IDS))
    assert not gone, f"docs/book/ has pages for notebooks that no longer exist: {gone}: {RUN}"


def test_the_index_links_every_page():
    with open(os.path.join(book.BOOK, "README.md")) as f:
        readme = f.read()
    with open(os.path.join(book.BOOK, "index.html")) as f:
        index = f.read()
    for name in _index():
        assert f"({name}.md)" in readme and f'href="{name}.html"' in index, f"{name} is not in the book's index: {RUN}"


def test_the_gallery_has_its_pictures_and_is_linked():
    with open(os.path.join(REPO, "diagrams", "README.md")) as f:
        gallery = f.read()
    shown = re.findall(r"\]\((gallery/[^)]+\.svg)\)", gallery)
    wanted = [f"gallery/{n}.svg" for n in book.GALLERY_PICKS] + [f"gallery/{book.TIMELINE[0]}.svg"]
    for pic in wanted:
        assert pic in shown, f"diagrams/README.md does not show {pic}: {RUN}"
    for pic in shown:
        path = os.path.join(REPO, "diagrams", pic)
        assert os.path.exists(path), f"diagrams/{pic} is missing: {RUN}"
        with open(path) as f:
            assert "<svg" in f.read(2000), f"diagrams/{pic} is not an SVG"
    with open(os.path.join(REPO, "README.md")) as f:
        assert "diagrams/README.md" in f.read(), "README.md must link the gallery"


@pytest.mark.parametrize("path", [
    pytest.param(p, id=book.stem(p), marks=[pytest.mark.xfail(strict=True, reason=LINK_PENDING[book.stem(p)])]
                 if book.stem(p) in LINK_PENDING else []) for p in NOTEBOOKS])
def test_each_notebook_opens_with_what_you_will_see(path):
    name = book.stem(path)
    with open(path) as f:
        first = "".join(json.load(f)["cells"][0]["source"])
    assert f"(../docs/book/{name}.md)" in first and "(../diagrams/README.md)" in first, (
        f"the first cell of notebooks/{name}.ipynb should end with: **What you will see:** "
        f"[this chapter run and rendered, with its diagrams](../docs/book/{name}.md) · "
        f"[the gallery](../diagrams/README.md), without running anything.")


def test_the_timeline_groups_an_explain_transcript_into_steps():
    """The timeline is read from --explain's text: a transcript of that shape gives its steps in order."""
    from minidocker.diagrams import timeline
    text = ("# monitor: fork a child\n  0  unshare(CLONE_NEWNS|CLONE_NEWPID)\n"
            "# monitor: the container's cgroup\n  mkdir -p /sys/fs/cgroup/pids/p/c\n"
            "  write   '64' > /sys/fs/cgroup/pids/p/c/pids.max\n  write 'PID' > /sys/fs/cgroup/pids/p/c/cgroup.procs\n"
            "# pid 1 of the container\n  1  mount(None, '/', None, MS_REC|MS_PRIVATE, None)\n"
            "  2  mkdir('$C/rootfs/proc', 0o555)\n  3  mount('proc', '$C/rootfs/proc', 'proc', 0, None)\n"
            "  4  chdir('$C/rootfs')\n  5  pivot_root('.', '.')\n  6  umount2('.', MNT_DETACH)\n  7  chdir('/')\n"
            "  8  execve('/bin/sh', ['sh'], {})\n")
    steps = [(a, s, n) for a, s, n, _ in timeline.parse(text)]
    assert steps == [("runtime", "new namespaces", 1), ("runtime", "cgroup: create", 1),
                     ("runtime", "cgroup: limits, device rules", 1), ("runtime", "cgroup: move pid 1 in", 1),
                     ("pid 1", "private mounts", 1), ("pid 1", "/proc and /sys", 2),
                     ("pid 1", "pivot_root", 4), ("pid 1", "exec the command", 1)]
    assert "pivot_root" in timeline.timeline_graph(text).source
    with pytest.raises(ValueError, match="run --explain"):
        timeline.timeline_graph("nothing here")

"""Draw a layer stack from the directories on disk: for each path, what each layer holds, which layer
supplies the merged view, and which whiteouts or opaque directories hide what is below.

Rows are paths, columns the layers from the top (the container's upper layer, if any) down to the
image's base, then the merged result. Green: the layer that supplies the path; red: a whiteout
(char 0:0) or an opaque directory; grey: present but hidden by something above. The rule is
:func:`minidocker.unionfs.lookup`, computed without mounting — compare it with ``ls`` on the mount.

    >>> from minidocker.diagrams import layers
    >>> layers.render(layers.layer_stack_graph(dirs, names=["upper", "layer 1", "base"]), "stack")
"""
from __future__ import annotations

import html
import os
import stat

import graphviz

from ..unionfs import is_opaque, is_whiteout, lookup
from .mounts import render  # noqa: F401  (re-exported: diagrams/NAME.svg)

SUPPLIES, HIDDEN, MARKER, EMPTY = "#b7e4c7", "#dee2e6", "#f4a3a3", "#ffffff"


def _kind(st: os.stat_result) -> str:
    if is_whiteout(st):
        return "whiteout"
    return {stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink", stat.S_IFREG: "file"}.get(stat.S_IFMT(st.st_mode), "special")


def all_paths(layers: list[str], limit: int = 40) -> list[str]:
    """Every path present in any layer (whiteouts included), sorted, at most ``limit``."""
    found = set()
    for layer in layers:
        for dirpath, dirnames, filenames in os.walk(layer):
            for n in dirnames + filenames:
                found.add("/" + os.path.relpath(os.path.join(dirpath, n), layer))
    return sorted(found)[:limit]


def stack_table(layers: list[str], paths: list[str]) -> list[dict]:
    """For each path: per layer what is there (``None``: nothing), and which layer supplies it."""
    rows = []
    for path in paths:
        cells = []
        for layer in layers:
            try:
                st = os.lstat(layer + path)
            except (FileNotFoundError, NotADirectoryError):
                cells.append(None)
                continue
            kind = _kind(st)
            if kind == "dir" and is_opaque(layer + path):
                kind = "opaque dir"
            cells.append(kind)
        found = lookup(layers, path)
        rows.append({"path": path, "cells": cells, "supplier": found[0] if found else None})
    return rows


def layer_stack_graph(layers: list[str], paths: list[str] | None = None,
                      names: list[str] | None = None, title: str = "layer stack") -> graphviz.Digraph:
    names = names or [f"layer {len(layers) - i - 1}" for i in range(len(layers))]
    rows = stack_table(layers, paths if paths is not None else all_paths(layers))
    head = "".join(f"<td><b>{html.escape(n)}</b></td>" for n in names)
    body = []
    for r in rows:
        tds = [f'<td align="left"><b>{html.escape(r["path"])}</b></td>']
        for i, kind in enumerate(r["cells"]):
            if kind is None:
                colour, text = EMPTY, ""
            elif kind in ("whiteout", "opaque dir"):
                colour, text = MARKER, kind
            elif i == r["supplier"]:
                colour, text = SUPPLIES, kind
            else:
                colour, text = HIDDEN, kind
            tds.append(f'<td bgcolor="{colour}">{html.escape(text)}</td>')
        merged = (f"from {names[r['supplier']]}" if r["supplier"] is not None else "— (hidden)")
        tds.append(f'<td bgcolor="{SUPPLIES if r["supplier"] is not None else HIDDEN}">{html.escape(merged)}</td>')
        body.append("<tr>" + "".join(tds) + "</tr>")
    label = (f'<<table border="0" cellborder="1" cellspacing="0" cellpadding="4">'
             f'<tr><td><b>path</b></td>{head}<td><b>merged view</b></td></tr>{"".join(body)}</table>>')
    g = graphviz.Digraph("layers", graph_attr={"label": title, "labelloc": "t", "fontname": "Helvetica"},
                         node_attr={"shape": "plaintext", "fontname": "Helvetica", "fontsize": "10"})
    g.node("stack", label)
    return g


def table_graph(title: str, headers: list[str], rows: list[list[str]],
                highlight=lambda row: False) -> graphviz.Digraph:
    """A plain table (e.g. inode numbers before and after a copy-up); ``highlight(row)`` rows in red."""
    head = "".join(f"<td><b>{html.escape(h)}</b></td>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td bgcolor="{MARKER if highlight(r) else EMPTY}">'
                                    f"{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    g = graphviz.Digraph("table", graph_attr={"label": title, "labelloc": "t", "fontname": "Helvetica"},
                         node_attr={"shape": "plaintext", "fontname": "Helvetica", "fontsize": "10"})
    g.node("t", f'<<table border="0" cellborder="1" cellspacing="0" cellpadding="4"><tr>{head}</tr>{body}</table>>')
    return g

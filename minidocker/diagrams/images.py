"""Draw an image as the store holds it: index.json -> manifest -> config + layers -> DiffIDs ->
ChainIDs -> snapshots, every box read from the store's files (nothing is drawn from memory).

Blue boxes are blobs (named by the sha256 of their bytes), green are ids computed from them
(DiffID = sha256 of the *uncompressed* layer, ChainID = "this layer on top of those"), grey are
the snapshot directories an overlay mount stacks. The edges say which document names which.

    >>> from minidocker.diagrams import images
    >>> images.render(images.image_graph(store, "busybox"), "busybox-image")  # -> diagrams/busybox-image.svg
"""
from __future__ import annotations

import json
import os

import graphviz

from ..images.store import REF_NAME_ANNOTATION, ImageStore, chain_ids
from .mounts import render as _render

BLOB, COMPUTED, DISK, NAME = "#cfe2ff", "#d1e7dd", "#e9ecef", "#fff3cd"


def _short(digest: str) -> str:
    algorithm, _, hexa = digest.partition(":")
    return f"{algorithm}:{hexa[:12]}…"


def image_graph(store: ImageStore, name: str) -> graphviz.Digraph:
    """The chain of one image (a name or id) in ``store``."""
    image = store.resolve(name)
    g = graphviz.Digraph("image", graph_attr={"rankdir": "LR", "fontname": "Helvetica",
                                              "label": f"{name} in {store.root}", "labelloc": "t"},
                         node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica",
                                    "fontsize": "10"},
                         edge_attr={"fontname": "Helvetica", "fontsize": "9"})
    with open(store.index_path) as f:
        index = json.load(f)
    entries = [e for e in index["manifests"] if e["digest"] == image.manifest_digest]
    g.node("index", "index.json\n" + "\n".join(
        (e.get("annotations") or {}).get(REF_NAME_ANNOTATION, "<none>") for e in entries), fillcolor=NAME)
    manifest = json.loads(store.content.read(image.manifest_digest))
    flavour = "docker v2 schema 2" if "docker" in manifest.get("mediaType", "") else "OCI"
    g.node("manifest", f"manifest ({flavour})\n{_short(image.manifest_digest)}", fillcolor=BLOB)
    g.edge("index", "manifest", label="digest")
    config = json.loads(store.content.read(manifest["config"]["digest"]))
    cfg = config.get("config") or {}
    g.node("config", f"config = image id\n{_short(manifest['config']['digest'])}\n"
                     f"{config.get('os')}/{config.get('architecture')}  Cmd {cfg.get('Cmd')}",
           fillcolor=BLOB)
    g.edge("manifest", "config", label="config")
    diff_ids = config["rootfs"]["diff_ids"]
    for n, (layer, diff_id, chain_id) in enumerate(zip(manifest["layers"], diff_ids, chain_ids(diff_ids))):
        kind = "gzip" if layer["mediaType"].endswith("gzip") else "tar"
        g.node(f"layer{n}", f"layer {n} ({kind})\n{_short(layer['digest'])}\n{layer['size']:,} bytes",
               fillcolor=BLOB)
        g.edge("manifest", f"layer{n}", label=f"layers[{n}]")
        g.node(f"diff{n}", f"DiffID\n{_short(diff_id)}", fillcolor=COMPUTED)
        g.edge(f"layer{n}", f"diff{n}", label="sha256(uncompressed)")
        g.edge("config", f"diff{n}", label=f"rootfs.diff_ids[{n}]", style="dashed")
        g.node(f"chain{n}", f"ChainID\n{_short(chain_id)}", fillcolor=COMPUTED)
        g.edge(f"diff{n}", f"chain{n}")
        if n:
            g.edge(f"chain{n - 1}", f"chain{n}", label="sha256(parent + ' ' + DiffID)")
        snapshotter = store.snapshotter
        there = snapshotter is not None and snapshotter.exists(chain_id)
        where = f"{snapshotter.driver} snapshot {snapshotter.stat(chain_id).id}" if there else "snapshot"
        g.node(f"snap{n}", f"{where}\ncommitted as {chain_id[7:19]}…\n"
                           f"{'extracted' if there else 'not extracted yet'}",
               fillcolor=DISK, style="rounded,filled" if there else "rounded,dashed")
        g.edge(f"chain{n}", f"snap{n}", label="names")
    return g


def render(graph: graphviz.Digraph, name: str) -> str:
    """Write ``diagrams/NAME.svg`` at the repository root (as mounts.render does); return its path."""
    return _render(graph, name)


__all__ = ["image_graph", "render"]

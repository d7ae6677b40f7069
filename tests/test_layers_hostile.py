"""The hostile layer corpus (images/hostile.py): every archive is refused with a clear message
naming the problem, or contained inside the target; the "host" beside the target never changes.
Also: zstd layers, parallel extraction, and a hostile layer through the store leaves no snapshot."""
from __future__ import annotations

import io
import os
import re
import tarfile

import pytest

from minidocker.images import ImageStore, LayerError, apply_layer
from minidocker.images.hostile import CORPUS, fingerprint, make_host
from minidocker.images.layers import apply_layers_parallel
from minidocker.unionfs import new_snapshotter

from test_images import add_synthetic, make_tar


def test_corpus_is_big_enough():
    assert len(CORPUS) >= 20
    assert sum(c.expect == "refused" for c in CORPUS) >= 15


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_hostile_archive(tmp_path, case):
    if case.root_only and os.geteuid() != 0:
        pytest.skip("device nodes need root")
    host = make_host(str(tmp_path))
    target = tmp_path / "target"
    target.mkdir()
    before = fingerprint(host)
    real_shadow = os.stat("/etc/shadow") if os.path.exists("/etc/shadow") else None
    layer = case.build(host)
    if case.expect == "refused":
        with pytest.raises(LayerError) as e:
            apply_layer(io.BytesIO(layer), str(target))
        assert re.search(case.match, str(e.value)), str(e.value)
    else:
        apply_layer(io.BytesIO(layer), str(target))
        assert case.check(str(target), host), f"{case.name}: not where it should be inside the target"
    assert fingerprint(host) == before, "the host directory changed"
    if real_shadow is not None:
        assert os.stat("/etc/shadow").st_mtime_ns == real_shadow.st_mtime_ns
    assert not os.path.exists(tmp_path / "escaped")
    assert sorted(os.listdir(tmp_path)) == ["host", "target"]  # nothing written beside them


def test_hostile_layer_in_the_store_leaves_no_snapshot(tmp_path):
    """Through the store, a refused layer leaves neither a snapshot nor a temporary directory."""
    store = ImageStore(str(tmp_path / "store"), snapshotter=new_snapshotter("overlay", str(tmp_path / "snap")))
    bad = make_tar(("file", "ok", "1"), ("sym", "a", "b"), ("sym", "b", "a"), ("file", "a/x", "x"))
    with pytest.raises(LayerError, match="too many levels"):
        add_synthetic(store, [bad], "bad:1")   # extracted when added: refused, nothing recorded
    assert store.list() == [] and store.snapshotter.list() == []
    leftovers = []
    for dirpath, dirnames, filenames in os.walk(tmp_path):
        leftovers += [n for n in dirnames + filenames if n.startswith(".tmp") or n == "fs"]
    assert leftovers == []


def test_zstd_layer(tmp_path):
    zstandard = pytest.importorskip("zstandard")
    plain = make_tar(("dir", "d", None), ("file", "d/z", "zstd!"))
    result = apply_layer(io.BytesIO(zstandard.ZstdCompressor().compress(plain)), str(tmp_path))
    assert (tmp_path / "d" / "z").read_text() == "zstd!"
    import hashlib
    assert result.diff_id == "sha256:" + hashlib.sha256(plain).hexdigest()
    whole = zstandard.ZstdCompressor().compress(plain * 50)
    truncated = whole[: len(whole) // 2]
    with pytest.raises(LayerError, match="zstd"):
        apply_layer(io.BytesIO(truncated), str(tmp_path))


def test_parallel_extraction_matches_sequential(tmp_path):
    layers = []
    for n in range(4):
        data = make_tar(("dir", f"l{n}", None), *[("file", f"l{n}/f{i}", f"{n}-{i}") for i in range(50)])
        p = tmp_path / f"layer{n}.tar"
        p.write_bytes(data)
        layers.append(str(p))
    jobs = []
    for n, layer in enumerate(layers):
        (tmp_path / f"par{n}").mkdir()
        jobs.append((layer, str(tmp_path / f"par{n}")))
    results = apply_layers_parallel(jobs, whiteouts="copy", workers=2)
    for n, layer in enumerate(layers):
        (tmp_path / f"seq{n}").mkdir()
        seq = apply_layer(layer, str(tmp_path / f"seq{n}"))
        assert results[n].diff_id == seq.diff_id and results[n].entries == 51
        assert fingerprint(str(tmp_path / f"par{n}")) == fingerprint(str(tmp_path / f"seq{n}"))


def test_parallel_extraction_reports_the_failure(tmp_path):
    good, bad = tmp_path / "good.tar", tmp_path / "bad.tar"
    good.write_bytes(make_tar(("file", "x", "1")))
    bad.write_bytes(make_tar(("file", "../escape", "1")))
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    with pytest.raises(LayerError, match="escapes the target"):
        apply_layers_parallel([(str(good), str(tmp_path / "a")), (str(bad), str(tmp_path / "b"))],
                              whiteouts="copy", workers=2)
    assert not (tmp_path / "escape").exists()

"""images/model.py: the OCI schemas with upstream's extra checks pass all published test vectors;
platform selection; the run-time config with defaults."""
from __future__ import annotations

import json
import os

import pytest

from minidocker.images import model

# image-spec v1.1.1's schema test fixtures and spec examples (Apache-2.0), copied verbatim from
# shared/specs/oci/image-spec/test-vectors.json (see SOURCES.md there for how they were extracted).
VECTORS = os.path.join(os.path.dirname(__file__), "data", "oci-image-spec-test-vectors.json")


def load_vectors():
    if not os.path.exists(VECTORS):
        return []
    with open(VECTORS) as f:
        return json.load(f)["cases"]


CASES = load_vectors()


def test_vectors_are_there():
    assert len(CASES) == 79, f"test vectors not found at {VECTORS}"


@pytest.mark.parametrize("case", CASES, ids=[f"{c['source']}" for c in CASES])
def test_published_test_vector(case):
    try:
        doc = json.loads(case["document"])
    except ValueError:
        assert case["expectInvalid"], "a valid vector that is not JSON"
        with pytest.raises(model.InvalidDocument):
            model.validate(case["document"].encode(), case["mediaType"])
        return
    found = model.problems(doc, case["mediaType"])
    assert bool(found) == case["expectInvalid"], found


def test_validate_names_the_problem():
    bad = {"schemaVersion": 2, "config": {"mediaType": model.OCI_CONFIG, "size": 2,
                                          "digest": "sha256:" + "A" * 64},
           "layers": [{"mediaType": model.OCI_LAYER, "size": 1, "digest": "sha256:" + "b" * 64}]}
    with pytest.raises(model.InvalidDocument, match=r"64 lowercase hex"):
        model.validate(bad, model.OCI_MANIFEST, "manifest")
    with pytest.raises(model.InvalidDocument, match=r"config/size: 'two' is not of type"):
        model.validate(dict(bad, config=dict(bad["config"], size="two")), model.OCI_MANIFEST)
    short = dict(bad, config=dict(bad["config"], digest="sha256:" + "a" * 63))
    with pytest.raises(model.InvalidDocument, match="64 lowercase hex"):
        model.validate(short, model.OCI_MANIFEST)
    env = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
           "config": {"Env": ["NOEQUALS"]}}
    with pytest.raises(model.InvalidDocument, match="not NAME=value"):
        model.validate(env, model.DOCKER_CONFIG)


INDEX = {"schemaVersion": 2, "mediaType": model.DOCKER_LIST, "manifests": [
    {"mediaType": model.DOCKER_MANIFEST, "digest": "sha256:" + "1" * 64, "size": 1,
     "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
    {"mediaType": model.DOCKER_MANIFEST, "digest": "sha256:" + "2" * 64, "size": 1,
     "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
    {"mediaType": model.DOCKER_MANIFEST, "digest": "sha256:" + "3" * 64, "size": 1,
     "platform": {"os": "linux", "architecture": "amd64"}},
    {"mediaType": model.DOCKER_MANIFEST, "digest": "sha256:" + "4" * 64, "size": 1,
     "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
    {"mediaType": model.OCI_MANIFEST, "digest": "sha256:" + "5" * 64, "size": 1,
     "platform": {"os": "unknown", "architecture": "unknown"}},
    {"mediaType": model.DOCKER_MANIFEST, "digest": "sha256:" + "6" * 64, "size": 1,
     "platform": {"os": "windows", "architecture": "amd64"}},
]}


@pytest.mark.parametrize("want,digit", [
    (model.Platform("linux", "amd64"), "3"), (model.Platform("linux", "arm", "v7"), "2"),
    (model.Platform("linux", "arm", "v6"), "1"), (model.Platform("linux", "arm64", "v8"), "4"),
    (model.Platform("linux", "arm64"), "4"), (model.Platform("windows", "amd64"), "6"),
])
def test_platform_selection(want, digit):
    assert model.select_manifest(INDEX, want)["digest"] == "sha256:" + digit * 64


def test_host_platform_selection_and_no_match():
    model.validate(INDEX, model.DOCKER_LIST)
    host = model.host_platform()
    assert host.os == "linux" and host.architecture in ("amd64", "arm64", "arm", "386", "ppc64le",
                                                         "s390x", "riscv64")
    if host.architecture == "amd64":
        assert model.select_manifest(INDEX)["digest"] == "sha256:" + "3" * 64
    with pytest.raises(model.NoMatchingPlatform, match="linux/riscv64.*it has: linux/amd64"):
        model.select_manifest(INDEX, model.Platform("linux", "riscv64"))


def test_exec_config_defaults():
    cfg = model.exec_config({"config": {"Cmd": ["sh"], "StopSignal": "SIGQUIT",
                                        "ExposedPorts": {"80/tcp": {}}}})
    assert cfg["Cmd"] == ["sh"] and cfg["Env"] == [] and cfg["Entrypoint"] is None
    assert cfg["StopSignal"] == "SIGQUIT" and cfg["ExposedPorts"] == {"80/tcp": {}}
    assert cfg["Volumes"] == {} and cfg["Labels"] == {} and cfg["WorkingDir"] == ""
    assert model.media_type_of({"manifests": []}) == model.OCI_INDEX
    assert model.media_type_of({"config": {}, "layers": []}) == model.OCI_MANIFEST

"""The build chapter without a daemon: Dockerfile syntax, substitution, .dockerignore, context
checksums, stages and the cache key."""
import io
import os
import tarfile

import pytest

from minidocker.build import context as ctx
from minidocker.build.builder import Cache, needed_stages, stages_of
from minidocker.build.dockerfile import DockerfileError, ExpandError, expand, expand_words, key_values, parse


def test_continuations_comments_and_forms():
    df = parse("# syntax=docker/dockerfile:1\nFROM busybox AS base\n# a comment\n"
               "RUN echo a \\\n# inside\n  && echo b\n\nCMD [\"sh\", \"-c\", \"x\"]\n")
    assert df.directives == {"syntax": "docker/dockerfile:1"}
    cmds = [(i.cmd, i.line) for i in df.instructions]
    assert cmds == [("FROM", 2), ("RUN", 4), ("CMD", 8)]
    assert df.instructions[1].args == "echo a   && echo b"
    assert df.instructions[2].json_form() == ["sh", "-c", "x"]
    assert df.instructions[1].json_form() is None


def test_escape_directive_backtick():
    df = parse("# escape=`\nFROM scratch\nCOPY a `\n  b /x\n")
    assert df.escape == "`"
    assert df.instructions[1].args == "a   b /x"


def test_directive_after_instruction_is_a_comment():
    df = parse("FROM scratch\n# escape=`\nCOPY a \\\n b /\n")
    assert df.escape == "\\" and df.instructions[1].args == "a  b /"


def test_errors_name_the_line():
    with pytest.raises(DockerfileError, match="line 2: unknown instruction: FORM"):
        parse("FROM scratch\nFORM x\n")
    with pytest.raises(DockerfileError, match="line 2: unknown flag: --bogus"):
        parse("FROM scratch\nCOPY --bogus=1 a b\n")
    with pytest.raises(DockerfileError, match="cannot be empty"):
        parse("# just a comment\n\n")


def test_flags():
    ins = parse("FROM scratch\nCOPY --from=build --chown=1:2 /a /b\n").instructions[1]
    assert ins.flags == {"from": "build", "chown": "1:2"} and ins.args == "/a /b"


@pytest.mark.parametrize("word,want", [
    ("$A", "x"), ("${A}y", "xy"), ("${NO:-def}", "def"), ("${A:-def}", "x"), ("${E:-def}", "def"),
    ("${E-def}", ""), ("${A:+alt}", "alt"), ("${NO:+alt}", ""), ("${E+alt}", "alt"),
    ("'$A'", "$A"), ('"$A b"', "x b"), ("\\$A", "$A"), ("${NO:-${A}z}", "xz"), ("a$", "a$"),
])
def test_substitution(word, want):
    assert expand(word, {"A": "x", "E": ""}) == want


def test_substitution_errors_and_words():
    with pytest.raises(ExpandError, match="NO: must be set"):
        expand("${NO:?must be set}", {})
    assert expand_words('a "b c" $A', {"A": "x y"}) == ["a", "b c", "x y"]


def test_env_key_values():
    assert key_values('A=1 B="two words" C=$A', {"A": "0"}, "\\", "ENV", 1) == \
        [("A", "1"), ("B", "two words"), ("C", "0")]
    assert key_values("A some value", {}, "\\", "ENV", 1) == [("A", "some value")]
    assert key_values("V", {}, "\\", "ARG", 1) == [("V", None)]


@pytest.mark.parametrize("patterns,path,excluded", [
    ("*.log", "a.log", True), ("*.log", "d/a.log", False), ("**/*.log", "d/e/a.log", True),
    ("d", "d/x/y", True), ("d\n!d/keep", "d/keep", False), ("d\n!d/keep", "d/other", True),
    ("!a\na", "a", True), ("/tmp/*", "tmp/x", True), ("# comment\n", "# comment", False),
    ("a?c", "abc", True), ("[a-b]x", "bx", True), ("**", "any/thing", True),
])
def test_dockerignore(patterns, path, excluded):
    assert ctx.DockerIgnore(patterns).excluded(path) is excluded


def test_context_tar_applies_dockerignore(tmp_path):
    (tmp_path / "keep").write_text("k")
    (tmp_path / "skip.log").write_text("s")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep.log").write_text("x")
    (tmp_path / ".dockerignore").write_text("*.log\n**/*.log\n!d/keep.log\nDockerfile\n")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    buf = io.BytesIO()
    ctx.write_tar(str(tmp_path), buf)
    buf.seek(0)
    names = sorted(tarfile.open(fileobj=buf).getnames())
    assert names == [".dockerignore", "Dockerfile", "d", "d/keep.log", "keep"]
    buf.seek(0)
    out = tmp_path / "out"
    out.mkdir()
    ctx.extract(buf, str(out))
    assert (out / "d" / "keep.log").read_text() == "x" and not (out / "skip.log").exists()


def test_extract_refuses_escaping_names(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        ti = tarfile.TarInfo("../evil")
        ti.size = 1
        t.addfile(ti, io.BytesIO(b"x"))
    buf.seek(0)
    with pytest.raises(Exception):
        ctx.extract(buf, str(tmp_path / "c"))
    assert not (tmp_path / "evil").exists()


def test_checksum_follows_content_not_mtime(tmp_path):
    (tmp_path / "f").write_text("one")
    a = ctx.checksum(str(tmp_path), "f")
    os.utime(tmp_path / "f", (1, 1))
    assert ctx.checksum(str(tmp_path), "f") == a
    (tmp_path / "f").write_text("two")
    assert ctx.checksum(str(tmp_path), "f") != a
    (tmp_path / "f").write_text("one")
    os.chmod(tmp_path / "f", 0o755)
    assert ctx.checksum(str(tmp_path), "f") != a


def test_sources_globs_and_missing(tmp_path):
    for n in ("a.txt", "b.txt", "c.md"):
        (tmp_path / n).write_text(n)
    assert ctx.resolve_sources(str(tmp_path), ["*.txt"]) == ["a.txt", "b.txt"]
    with pytest.raises(ctx.ContextError, match='"/nope" not found'):
        ctx.resolve_sources(str(tmp_path), ["nope"])
    with pytest.raises(ctx.ContextError):
        ctx.resolve_sources(str(tmp_path), ["../../etc/passwd"])


def test_stages_target_and_skipping():
    df = parse("ARG BASE=busybox\nFROM $BASE AS a\nRUN a\nFROM busybox AS unused\nRUN u\n"
               "FROM scratch AS final\nCOPY --from=a /x /x\n")
    meta, stages = stages_of(df)
    assert [i.cmd for i in meta] == ["ARG"] and [s.name for s in stages] == ["a", "unused", "final"]
    assert needed_stages(stages, 2, {"BASE": "busybox"}, "\\") == [0, 2]
    assert needed_stages(stages, 1, {}, "\\") == [1]


def test_cache_key():
    k = Cache.key("sha256:1", "RUN x")
    assert k == Cache.key("sha256:1", "RUN x")
    assert k != Cache.key("sha256:2", "RUN x") and k != Cache.key("sha256:1", "RUN y")
    assert Cache.key("sha256:1", "COPY a /", "sum1") != Cache.key("sha256:1", "COPY a /", "sum2")

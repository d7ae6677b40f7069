"""The CLI's dispatch (minidocker/cli/main.py): argv -> only the invoked verb's parser -> its function,
and what ``minidocker run`` imports. No daemon: the parsers and imports are checked on their own, in
a fresh interpreter where ``sys.modules`` matters."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO
from minidocker.cli.main import VERBS, build_parser, requested_verb


def _python(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _verbs_built(parser) -> set[str]:
    return set(parser._subparsers._group_actions[0].choices)


@pytest.mark.parametrize("argv,verb", [
    (["ps", "-a"], "ps"),
    (["-H", "unix:///x.sock", "ps"], "ps"),                   # a global option's value is not the verb
    (["--tlsverify", "--tlscacert", "ca.pem", "run", "busybox"], "run"),
    (["--host=unix:///x.sock", "images"], "images"),
    (["--help", "run"], None),                                # help first: the whole table
    (["-H", "unix:///x.sock"], None),
    ([], None),
])
def test_requested_verb(argv, verb):
    assert requested_verb(argv) == verb


def test_only_the_invoked_verb_is_built():
    for verb in VERBS:
        assert _verbs_built(build_parser(only=verb)) == {verb}, verb


def test_the_full_parser_has_every_verb_and_help_lists_them():
    assert _verbs_built(build_parser()) == set(VERBS)
    out = subprocess.run([sys.executable, "-m", "minidocker.cli.main", "--help"], capture_output=True,
                         text=True, cwd=REPO, timeout=60).stdout
    listed = {line.split()[0] for line in out.splitlines() if line.startswith("    ") and line.split()}
    assert set(VERBS) <= listed, set(VERBS) - listed


def test_an_unknown_verb_is_refused_with_the_list():
    r = subprocess.run([sys.executable, "-m", "minidocker.cli.main", "bogus"], capture_output=True, text=True,
                       cwd=REPO, timeout=60)
    assert r.returncode == 2
    assert "invalid choice: 'bogus'" in r.stderr and "'run'" in r.stderr and "'volume'" in r.stderr


def test_every_verb_dispatches_to_its_function():
    """Each adder sets ``fn`` (the verb's function) on the arguments it parses."""
    samples = {"run": ["busybox"], "create": ["busybox"], "cp": ["a:/x", "y"], "rename": ["a", "b"],
               "tag": ["a", "b"], "import": ["f.tar"], "container": ["prune"], "system": ["df"],
               "image": ["ls"], "network": ["ls"], "volume": ["ls"]}
    one_arg = {"start", "rm", "stop", "kill", "wait", "restart", "top", "inspect", "logs", "pause", "unpause",
               "rmi", "history", "save", "diff", "commit", "port", "pull", "push", "exec", "attach", "build"}
    for verb in VERBS:
        args = samples.get(verb, ["x"] if verb in one_arg else [])
        a = build_parser(only=verb).parse_args([verb, *args])
        assert callable(getattr(a, "fn", None)), verb


def test_run_imports_no_chapter_and_no_formatter():
    """``minidocker run``'s parser and create body load only what they need: no chapter (the volumes
    package alone costs ~40 ms), no template engine, no other verb's module."""
    loaded = json.loads(_python(
        "import json, sys\n"
        "from minidocker.cli.main import build_parser\n"
        "from minidocker.cli.run import create_body\n"
        "a = build_parser(only='run').parse_args(['run', '--rm', '-e', 'A=1', '-v', '/x:/y', '--health-cmd', 'true',"
        " '-p', '8080:80', '--memory', '64m', 'busybox', 'true'])\n"
        "create_body(a)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('minidocker'))))\n"))
    chapters = ("kernel", "namespaces", "rootfs", "cgroups", "unionfs", "cow", "images", "registry", "network",
                "security", "volumes", "build", "runtime", "daemon")
    assert not [m for m in loaded if m.split(".")[1:2] and m.split(".")[1] in chapters], loaded
    for unneeded in ("minidocker.cli.gotemplate", "minidocker.cli.images", "minidocker.cli.build",
                     "minidocker.cli.containers", "minidocker.cli.system", "minidocker.cli.registry"):
        assert unneeded not in loaded


def test_mount_flag_still_parsed_by_the_volumes_chapter():
    """--mount goes through the chapter's parser (imported when the flag is given): its refusals stay."""
    from minidocker.cli.run import create_body
    a = build_parser(only="run").parse_args(["run", "--mount", "type=bind,source=/srv,target=/srv,readonly",
                                             "busybox"])
    assert create_body(a)["HostConfig"]["Mounts"] == [
        {"Type": "bind", "Source": "/srv", "Target": "/srv", "ReadOnly": True}]
    bad = build_parser(only="run").parse_args(["run", "--mount", "type=bind,target", "busybox"])
    with pytest.raises(SystemExit, match="invalid argument for --mount"):
        create_body(bad)


@pytest.mark.parametrize("group", ["image", "network", "volume"])
def test_a_command_group_alone_prints_its_own_help(group):
    """``docker volume`` (no sub-command) prints the group's usage, not the top-level one."""
    r = subprocess.run([sys.executable, "-m", "minidocker.cli.main", group], capture_output=True, text=True,
                       cwd=REPO, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith(f"usage: minidocker {group} "), (r.stdout[:200], r.stderr)
    a = build_parser(only=group).parse_args([group, "ls"])
    assert a.fn.__name__ in ("cmd_ls", "cmd_images")   # a sub-command still reaches its own function

"""README.md's "Start here", run as written in a fresh clone of this checkout — every command that
needs no VM. The VM-only ones (becoming root, installing Debian packages, serving Jupyter) are checked
without running them: `make -n` shows what they would do. The clone reuses this venv (the one
`make setup` built) instead of running apt and pip again."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

from conftest import REPO, need_root, need_tool

VM_ONLY = {"sudo -i", "cd /root/minidocker", "make student", "make jupyter"}


def _start_here_commands() -> list[str]:
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    block = re.search(r"<!-- start-here:commands.*?-->\s*```sh\n(.*?)```\s*<!-- /start-here:commands -->", text, re.S)
    assert block, "README.md has no start-here:commands block"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.split("#", 1)[0].strip()]


def test_start_here_commands_run_in_a_fresh_clone(tmp_path):
    need_root()   # lab 00's checks make real namespaces; so does a student, as root on the VM
    need_tool("git")
    commands = _start_here_commands()
    clone, home = tmp_path / "minidocker", tmp_path / "home"
    home.mkdir()
    subprocess.run(["git", "clone", "-q", REPO, str(clone)], check=True)
    # The tests run on this checkout's working tree, which may hold changes not yet committed:
    # bring those files in too, so that the clone is what this test run is about.
    changed = subprocess.run(["git", "-C", REPO, "ls-files", "-m", "-o", "--exclude-standard"],
                             capture_output=True, text=True, check=True).stdout.split()
    for rel in changed:
        src, dst = os.path.join(REPO, rel), clone / rel
        if os.path.isfile(src):
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(open(src, "rb").read())
    os.symlink(sys.prefix, clone / ".venv")       # `make student`'s venv, already built

    env = {"HOME": str(home), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
           "PYTHONPATH": str(clone), "MINIDOCKER_HOST": f"unix://{tmp_path}/none.sock"}
    script = []
    for cmd in commands:
        if cmd in VM_ONLY:
            continue
        script.append(f"{cmd}\necho \"@@ {cmd} -> $?\"")
    run = subprocess.run(["bash", "-c", "\n".join(script)], cwd=clone, env=env, capture_output=True,
                         text=True, timeout=240)
    out = run.stdout
    codes = dict(re.findall(r"^@@ (.*) -> (\d+)$", out, re.M))
    ran = [c for c in commands if c not in VM_ONLY]
    assert list(codes) == ran, f"not every command ran:\n{out}\n{run.stderr}"
    expected_failures = {"minidocker lab check 00"}   # the untouched copy: every check fails
    for cmd, code in codes.items():
        assert code == ("1" if cmd in expected_failures else "0"), f"{cmd} -> {code}\n{out}\n{run.stderr}"

    workspace = home / "minidocker-labs" / "00-kernel-calls"
    assert "chapters and labs here" in out                                      # minidocker doctor
    assert (workspace / "skeleton.py").read_text() == (clone / "labs" / "00-kernel-calls" / "skeleton.py").read_text()
    assert f"lab 00 kernel-calls: checking {workspace / 'skeleton.py'}" in out    # lab check: the copy
    assert re.search(r"^0/\d+ checks passed", out, re.M) and "✗" in out
    assert "lab 00 hint 1 of" in out                                            # lab hint
    specs = subprocess.run([str(clone / ".venv" / "bin" / "jupyter"), "kernelspec", "list", "--json"],
                           capture_output=True, text=True, check=True, env=env).stdout
    assert "minidocker" in json.loads(specs)["kernelspecs"], "the venv lacks the notebooks' kernel"


def test_vm_only_commands_do_what_start_here_says(tmp_path):
    commands = _start_here_commands()
    assert VM_ONLY <= set(commands), f"README's Start here lost {VM_ONLY - set(commands)}"
    dry = lambda target: subprocess.run(["make", "-n", "-C", REPO, target, f"VENV={tmp_path}/venv"],
                                        capture_output=True, text=True, check=True).stdout
    student = dry("student")
    assert "apt-get install" in student and "pip install -q -e '.[student]'" in student
    for heavy in ("qemu-system-x86", "podman", "skopeo"):
        assert heavy not in student, f"make student installs {heavy}"
    kernel = re.search(r"ipykernel install --sys-prefix --name (\S+)", student).group(1)
    from test_course import PENDING
    for nb in sorted(os.listdir(os.path.join(REPO, "notebooks"))):
        if nb.endswith(".ipynb") and nb not in PENDING:
            with open(os.path.join(REPO, "notebooks", nb)) as f:
                assert json.load(f)["metadata"]["kernelspec"]["name"] == kernel, nb
    jupyter = [line for line in dry("jupyter").splitlines() if "jupyter lab" in line]
    assert jupyter, "make jupyter does not run jupyter lab"
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    shown = jupyter[0].replace(f"{tmp_path}/venv", ".venv")
    assert f"`{shown}`" in readme, f"README's Jupyter command differs from the Makefile's: {shown}"
    assert "--allow-root" in shlex.split(shown)

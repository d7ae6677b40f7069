"""Checker for lab 10 (security). Unit checks on the recording kernel, then proofs with the chapter's
static probe (tests/probe/probe.c): it runs in a child of pid 1 of new mount, pid, ipc, uts and net
namespaces (mounts private, so its mount attempts never reach the host), after your functions ran in
that child, and reports what the kernel allowed. A control run without your code shows each attempt
succeeding, so a check passes only if *your* code stopped it.

    .venv/bin/python labs/10-security/check.py               # checks labs/10-security/skeleton.py
    .venv/bin/python labs/10-security/check.py --reference   # checks minidocker.security.confine
    .venv/bin/python labs/10-security/check.py path/to/mine.py
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
for p in (str(REPO), str(REPO / "tests")):   # run from a checkout; the probe's builder lives in tests/
    if p not in sys.path:
        sys.path.insert(0, p)

from minidocker import rootfs as R  # noqa: E402
from minidocker.labs import case  # noqa: E402
from minidocker.kernel import PR_CAPBSET_DROP, Linux, Recorder  # noqa: E402
from minidocker.security import capabilities as C  # noqa: E402
from minidocker.security import seccomp as S  # noqa: E402
from minidocker.security.confine import (CONTAINER_NAMESPACES, SETUP_FAILED, Defences,  # noqa: E402
                                         exec_captured)

REFERENCE = "minidocker.security.confine"
Result = tuple[str, bool, str]
DOCKER_HEX = "00000000a80425fb"


def _fail(cond: bool, message: str) -> None:
    if not cond:
        raise AssertionError(message)


def probe(setup, *attacks: str) -> dict:
    """The probe's answers ({name: "OK" | errno name | value}) after ``setup(kernel)`` ran in its process."""
    from probe import build_probe, parse
    binary = build_probe()
    scratch = tempfile.mkdtemp(prefix="lab10-")

    def pid1() -> str:
        R.make_mounts_private(Linux())
        return exec_captured([binary, "-d", scratch, *attacks], lambda: setup(Linux()))[1]

    try:
        out = R._run_in_new_namespaces(pid1, flags=CONTAINER_NAMESPACES, timeout=30)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for line in out.splitlines():
        _fail(not line.startswith(SETUP_FAILED), f"your code raised in the container: {line[len(SETUP_FAILED):]}")
    return {k: v.result for k, v in parse(out).items()}


def control() -> dict:
    a = probe(lambda k: None, "facts", "mount", "unshare", "keyctl", "bpf")
    _fail(all(a[n] == "OK" for n in ("mount", "unshare_mnt", "keyctl", "bpf")),
          f"without any defence the attacks should succeed here (are you root?): {a}")
    return a


def check_mask(m) -> str:
    got = m.capability_mask(C.DOCKER_DEFAULT)
    _fail(got == 0xa80425fb, f"Docker's 14: got {got:#x}, want 0xa80425fb")
    _fail(m.capability_mask([]) == 0, "no capabilities: want 0")
    _fail(m.capability_mask(["CAP_SYS_ADMIN"]) == 1 << 21, "CAP_SYS_ADMIN is bit 21")
    return "0xa80425fb"


def check_drop_calls(m) -> str:
    rec = Recorder()
    m.drop_capabilities(rec, C.DOCKER_DEFAULT)
    drops = {c.args[1] for c in rec.calls if c.name == "prctl" and c.args[:1] == (PR_CAPBSET_DROP,)}
    want = set(range(C.last_cap() + 1)) - {C.NUMBERS[n] for n in C.DOCKER_DEFAULT}
    _fail(drops == want, f"bounding drops: missing {sorted(want - drops)}, extra {sorted(drops - want)}")
    names = rec.names()
    _fail("capset" in names, "no capset call")
    _fail(all(i < names.index("capset") for i, c in enumerate(rec.calls)
              if c.name == "prctl" and c.args[:1] == (PR_CAPBSET_DROP,)),
          "drop from the bounding set before capset: capset takes away CAP_SETPCAP, which the drops need")
    capset = rec.calls[names.index("capset")].args
    _fail(tuple(capset) == (0xa80425fb, 0xa80425fb, 0), f"capset{tuple(hex(x) for x in capset)}: want "
                                                         "(0xa80425fb, 0xa80425fb, 0)")
    return f"{len(drops)} bounding drops, then capset"


def check_drop_probe(m) -> str:
    control()
    a = probe(lambda k: m.drop_capabilities(k, C.DOCKER_DEFAULT), "facts", "mount", "unshare")
    for key in ("CapEff", "CapPrm", "CapBnd"):
        _fail(a.get(key) == DOCKER_HEX, f"{key} {a.get(key)}, want {DOCKER_HEX}")
    _fail(int(a["CapInh"], 16) == 0 and int(a["CapAmb"], 16) == 0, f"CapInh {a['CapInh']} CapAmb {a['CapAmb']}")
    _fail(a["mount"] == "EPERM" and a["unshare_mnt"] == "EPERM", f"mount {a['mount']}, unshare {a['unshare_mnt']}")
    return "probe: CapEff=CapBnd=a80425fb, mount EPERM, unshare EPERM"


def check_rules(m) -> str:
    base = m.seccomp_rules(S.docker_default(), C.DOCKER_DEFAULT)
    admin = m.seccomp_rules(S.docker_default(), C.adjust(C.DOCKER_DEFAULT, add=["SYS_ADMIN"]))
    ptrace = m.seccomp_rules(S.docker_default(), C.adjust(C.DOCKER_DEFAULT, add=["SYS_PTRACE"]))
    want = S.to_oci(S.docker_default(), C.DOCKER_DEFAULT)
    _fail(base.get("architectures") == want["architectures"],
          f"architectures {base.get('architectures')}, want {want['architectures']}")
    _fail(base.get("defaultAction") == "SCMP_ACT_ERRNO", "keep defaultAction/defaultErrnoRet")
    for name in ("read", "execve", "capset"):
        _fail(S.allowed(base, name), f"{name} must be allowed")
    for name in ("mount", "unshare", "bpf", "open_by_handle_at", "kcmp", "keyctl"):
        _fail(not S.allowed(base, name), f"{name} must not be allowed with Docker's capabilities")
    for name in ("mount", "unshare", "setns", "bpf"):
        _fail(S.allowed(admin, name), f"{name} must be allowed with SYS_ADMIN")
    _fail(S.allowed(ptrace, "kcmp") and not S.allowed(admin, "kcmp"), "kcmp: only with SYS_PTRACE")
    _fail(not [r for r in admin["syscalls"] if r["names"] == ["clone"] and r.get("args")],
          "with SYS_ADMIN the argument-filtered clone rule is excluded")
    _fail(len(base["syscalls"]) == len(want["syscalls"]),
          f"{len(base['syscalls'])} rules, the reference resolves {len(want['syscalls'])}")
    return f"{len(base['syscalls'])} rules for Docker's capabilities"


def check_install_probe(m) -> str:
    control()
    rules = S.to_oci(S.docker_default(), C.DOCKER_DEFAULT)   # the reference's rules: test only task 4
    a = probe(lambda k: m.install_seccomp(k, rules), "facts", "mount", "unshare", "keyctl", "bpf")
    _fail(a.get("Seccomp") == "2", f"Seccomp {a.get('Seccomp')}: no filter installed")
    _fail(a.get("NoNewPrivs") == "0", "NoNewPrivs is 1: Docker does not set it (don't use the filter's load())")
    for n in ("mount", "unshare_mnt", "keyctl", "bpf"):
        _fail(a[n] == "EPERM", f"{n}: {a[n]}, want EPERM (every capability is held: only seccomp can refuse)")
    return "probe: Seccomp 2, mount/unshare/keyctl/bpf EPERM with all capabilities"


def check_confine_order(m) -> str:
    d = Defences.docker()
    rec = Recorder()
    m.confine(rec, d)
    names = rec.names()
    _fail("seccomp_load" in names and "capset" in names, f"calls: {names}")
    _fail(names.index("seccomp_load") < names.index("capset"),
          "without no_new_privs, load the filter before dropping CAP_SYS_ADMIN (EACCES otherwise)")
    _fail("keyctl" in names and names.index("keyctl") < names.index("seccomp_load"),
          "join the new session keyring before seccomp (the profile refuses keyctl)")
    rec = Recorder()
    m.confine(rec, Defences.docker(no_new_privs=True))
    names = rec.names()
    _fail("prctl" in names and names[-1] == "seccomp_load",
          "with no_new_privs, set it and load the filter last, right before execve")
    return "keyring, seccomp, capabilities; seccomp last with no_new_privs"


def check_confine_probe(m) -> str:
    control()
    a = probe(lambda k: m.confine(k, Defences.docker()), "facts", "mount", "unshare", "keyctl", "bpf")
    _fail(a.get("CapEff") == DOCKER_HEX and a.get("Seccomp") == "2", f"CapEff {a.get('CapEff')} Seccomp {a.get('Seccomp')}")
    for n in ("mount", "unshare_mnt", "keyctl", "bpf"):
        _fail(a[n] == "EPERM", f"{n}: {a[n]}")
    return "probe: Docker's confinement"


CHECKS = [("capability_mask", check_mask), ("drop_capabilities (calls)", check_drop_calls),
          ("drop_capabilities (probe)", check_drop_probe), ("seccomp_rules", check_rules),
          ("install_seccomp (probe)", check_install_probe), ("confine (order)", check_confine_order),
          ("confine (probe)", check_confine_probe)]


def check(module) -> list[Result]:
    """Run every check against ``module``; an exception (NotImplementedError included) fails it."""
    return [case(name, lambda fn=fn: (True, fn(module))) for name, fn in CHECKS]


def main(argv: list[str]) -> int:
    from minidocker.labs import script_main
    return script_main(argv, check, REFERENCE, HERE / "skeleton.py", "lab 10 (security)",
                       needs_root="the probe's control runs need real capabilities and namespaces")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

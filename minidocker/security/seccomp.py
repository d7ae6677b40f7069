"""seccomp: an allow-list of system calls, checked by the kernel before each one runs.

What this teaches
-----------------
Capabilities decide what a call may *do*; seccomp decides whether the call may be *made* at all.
A seccomp filter (seccomp(2), SECCOMP_SET_MODE_FILTER) is a small classic-BPF program the kernel
runs on every system call of the thread and its descendants: it sees the architecture, the syscall
number and the six arguments, and answers ALLOW, ERRNO(n), KILL, TRAP, LOG, ... Filters cannot be
removed, only stacked, and survive execve — one installed by pid 1 just before exec confines the
whole container. Loading one needs ``no_new_privs`` or CAP_SYS_ADMIN, so runc (and :func:`install`'s
caller) loads it while pid 1 still holds its capabilities.

Docker's default profile (``profiles/docker-default.json``, Docker's JSON format, the same data as
moby's ``profiles/seccomp/default.json``): ``defaultAction`` SCMP_ACT_ERRNO with errno 1 (EPERM) and
about 400 allowed calls. Dangerous calls are allowed only when the container holds the capability
they need anyway, so the profile is *tied* to ``--cap-add``: ``mount``, ``umount2``, ``unshare``,
``setns``, ``fsopen``/``fsmount``, ``bpf``, ``clone`` with CLONE_NEW* flags, ``clone3`` (ENOSYS, so
glibc falls back to clone) need CAP_SYS_ADMIN; ``open_by_handle_at`` CAP_DAC_READ_SEARCH; ``ptrace``'s
siblings ``kcmp``/``pidfd_getfd``/``process_madvise`` CAP_SYS_PTRACE (ptrace itself is allowed on
kernels >= 4.8, whose ptrace no longer bypasses seccomp); ``reboot`` CAP_SYS_BOOT; modules
CAP_SYS_MODULE; ``kexec_load``, ``keyctl``/``add_key``/``request_key`` (keys are not namespaced),
``userfaultfd``, ``perf_event_open`` (without CAP_PERFMON) never. :func:`to_oci` resolves the
``includes``/``excludes`` of a profile for one capability list, architecture and kernel (moby's
``setupSeccomp``), giving the OCI ``linux.seccomp`` object a runtime receives.

Compiling: :func:`compile_bpf` turns the OCI rules into BPF with **libseccomp** (Debian's
libseccomp2, through the ``pyseccomp`` ctypes binding, which works with Python 3.11 and needs no
compiler). Why a library and not our own BPF assembler (as :mod:`devices` does for its much smaller
eBPF program): a correct seccomp filter must check the audit architecture first (an x86_64 process
can make i386 and x32 system calls with *other* numbers for the same names), map ~400 names to
numbers per architecture, compare 64-bit arguments with 32-bit BPF loads, and keep the program
short enough to be fast (libseccomp builds a binary tree). That is libseccomp's job, and runc and
crun use it too. We only export its BPF (``seccomp_export_bpf``) and load that ourselves through the
kernel layer (``kernel.seccomp_load``), so the load is recorded in ``--explain`` and libseccomp's
own loader does not silently set no_new_privs. Compiling takes tens of milliseconds, so the program
is cached: in memory, and on disk under ``$MINIDOCKER_CACHE`` (default ``~/.cache/minidocker``)
``/seccomp/<sha256>.bpf``, keyed by the rules, the architecture and the libseccomp library and
binding files (path, size, mtime). A hit does not even import ``pyseccomp``: its import looks the
library up with ``ldconfig`` (tens of milliseconds), which is most of a cached start.

Names libseccomp does not know (calls newer than the installed library) cannot be matched and are
left out: they get the default action (EPERM), and :func:`compile_bpf` reports them.

Man pages and specs followed: seccomp(2), prctl(2) (PR_SET_NO_NEW_PRIVS), seccomp_rule_add(3),
seccomp_export_bpf(3), OCI config-linux.md "Seccomp", Docker's seccomp documentation and moby's
profiles/seccomp (format and include/exclude rules).
"""
from __future__ import annotations

import json
import os
from functools import lru_cache

from minidocker.kernel import (SECCOMP_FILTER_FLAG_LOG, SECCOMP_FILTER_FLAG_SPEC_ALLOW,
                               SECCOMP_FILTER_FLAG_TSYNC)
from minidocker.util import atomic_write

PROFILE = os.path.join(os.path.dirname(__file__), "profiles", "docker-default.json")

# Go/Docker architecture names, as in a profile's "arches" (moby's goToNative), by uname machine.
NATIVE_ARCH = {"x86_64": "amd64", "i686": "x86", "i386": "x86", "aarch64": "arm64", "armv7l": "arm",
               "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64", "mips64": "mips64",
               "loongarch64": "loong64"}
# ... and their SCMP_ARCH_* names, to pick the entry of "archMap".
SCMP_ARCH = {"amd64": "SCMP_ARCH_X86_64", "x86": "SCMP_ARCH_X86", "arm64": "SCMP_ARCH_AARCH64",
             "arm": "SCMP_ARCH_ARM", "ppc64le": "SCMP_ARCH_PPC64LE", "s390x": "SCMP_ARCH_S390X",
             "riscv64": "SCMP_ARCH_RISCV64", "mips64": "SCMP_ARCH_MIPS64",
             "loong64": "SCMP_ARCH_LOONGARCH64"}

FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": SECCOMP_FILTER_FLAG_TSYNC,
         "SECCOMP_FILTER_FLAG_LOG": SECCOMP_FILTER_FLAG_LOG,
         "SECCOMP_FILTER_FLAG_SPEC_ALLOW": SECCOMP_FILTER_FLAG_SPEC_ALLOW}

EPERM = 1


class SeccompError(ValueError):
    """A profile that cannot be used, with a message naming the problem."""


@lru_cache(maxsize=1)
def _default_text() -> str:
    with open(PROFILE) as f:
        return f.read()


def docker_default() -> dict:
    """Docker's default profile, in Docker's JSON format (a fresh copy: callers may change it)."""
    return json.loads(_default_text())


def load_profile(text: str) -> dict:
    """Parse a ``--security-opt seccomp=<file>`` profile (its contents) with docker's message on
    bad JSON: ``Decoding seccomp profile failed: ...``."""
    try:
        profile = json.loads(text)
    except ValueError as e:
        raise SeccompError(f"Decoding seccomp profile failed: {e}") from None
    if not isinstance(profile, dict):
        raise SeccompError("Decoding seccomp profile failed: expected a JSON object")
    return profile


def native_arch() -> str:
    machine = os.uname().machine
    return NATIVE_ARCH.get(machine, machine)


def _kernel_at_least(release: str, minimum: str) -> bool:
    def nums(v: str) -> tuple[int, ...]:
        out = []
        for part in v.split("-")[0].split(".")[:2]:
            digits = "".join(c for c in part if c.isdigit())
            out.append(int(digits or 0))
        return tuple(out)
    return nums(release) >= nums(minimum)


def to_oci(profile: dict, capabilities: list[str], *, arch: str | None = None,
           kernel_release: str | None = None) -> dict:
    """Resolve a Docker profile for a container with these (bounding) ``capabilities``: the OCI
    ``linux.seccomp`` object ``{"defaultAction", "defaultErrnoRet", "architectures", "syscalls"}``.

    moby's rules, entry by entry: ``excludes`` drops the entry if the architecture is listed, if
    *any* listed capability is held, or if the kernel is at least ``minKernel``; ``includes`` keeps it
    only if the architecture is listed, *all* listed capabilities are held and the kernel is at least
    ``minKernel``. ``architectures`` is the native one plus its ``subArchitectures`` from ``archMap``.
    """
    if profile.get("architectures") and profile.get("archMap"):
        raise SeccompError("both 'architectures' and 'archMap' are specified in the seccomp profile, "
                           "use either 'architectures' or 'archMap'")
    arch = arch or native_arch()
    release = kernel_release or os.uname().release
    caps = set(capabilities)
    import copy
    out = {k: copy.deepcopy(v) for k, v in profile.items()
           if k not in ("archMap", "syscalls", "architectures")}
    out["architectures"] = list(profile.get("architectures") or [])
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == SCMP_ARCH.get(arch):
            out["architectures"] = [entry["architecture"], *(entry.get("subArchitectures") or [])]
            break
    syscalls = []
    for call in profile.get("syscalls") or []:
        if call.get("name") and call.get("names"):
            raise SeccompError("both 'name' and 'names' are specified in the seccomp profile, "
                               "use either 'name' or 'names'")
        ex, inc = call.get("excludes") or {}, call.get("includes") or {}
        if arch in (ex.get("arches") or []) or caps & set(ex.get("caps") or []):
            continue
        if ex.get("minKernel") and _kernel_at_least(release, ex["minKernel"]):
            continue
        if inc.get("arches") and arch not in inc["arches"]:
            continue
        if not set(inc.get("caps") or []) <= caps:
            continue
        if inc.get("minKernel") and not _kernel_at_least(release, inc["minKernel"]):
            continue
        rule = {"names": list(call.get("names") or [call["name"]]), "action": call["action"]}
        for key in ("errnoRet", "args"):
            if call.get(key) is not None:
                rule[key] = copy.deepcopy(call[key])
        syscalls.append(rule)
    out["syscalls"] = syscalls
    return out


def allowed(oci_seccomp: dict, name: str) -> bool:
    """Whether ``name`` has an unconditional SCMP_ACT_ALLOW rule (for tables and tests; a rule with
    ``args`` allows only some calls and does not count)."""
    return any(name in r["names"] and r["action"] == "SCMP_ACT_ALLOW" and not r.get("args")
               for r in oci_seccomp.get("syscalls", []))


# --- compiling with libseccomp -------------------------------------------------------------------

def _seccomp():
    try:
        import pyseccomp
    except (ImportError, OSError) as e:   # OSError: libseccomp.so.2 missing
        raise RuntimeError("seccomp needs the pyseccomp package and Debian's libseccomp2 "
                           f"(make setup installs both): {e}") from None
    return pyseccomp


def _action(sc, name: str, errno_ret: int | None):
    simple = {"SCMP_ACT_ALLOW": sc.ALLOW, "SCMP_ACT_KILL": sc.KILL, "SCMP_ACT_KILL_THREAD": sc.KILL_THREAD,
              "SCMP_ACT_KILL_PROCESS": sc.KILL_PROCESS, "SCMP_ACT_TRAP": sc.TRAP, "SCMP_ACT_LOG": sc.LOG}
    if name in simple:
        return simple[name]
    if name == "SCMP_ACT_ERRNO":
        return sc.ERRNO(EPERM if errno_ret is None else errno_ret)
    if name == "SCMP_ACT_TRACE":
        return sc.TRACE(EPERM if errno_ret is None else errno_ret)
    if name == "SCMP_ACT_NOTIFY":
        raise SeccompError("SCMP_ACT_NOTIFY needs a seccomp listener (listenerPath), which minidocker "
                           "does not implement")
    raise SeccompError(f"unknown seccomp action {name!r}")


def _ops(sc) -> dict:
    return {"SCMP_CMP_NE": sc.NE, "SCMP_CMP_LT": sc.LT, "SCMP_CMP_LE": sc.LE, "SCMP_CMP_EQ": sc.EQ,
            "SCMP_CMP_GE": sc.GE, "SCMP_CMP_GT": sc.GT, "SCMP_CMP_MASKED_EQ": sc.MASKED_EQ}


def _cache_dir() -> str:
    base = os.environ.get("MINIDOCKER_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "minidocker")
    return os.path.join(base, "seccomp")


_memory: dict[str, tuple[bytes, list[str]]] = {}

LIBRARY = "libseccomp.so.2"          # the soname pyseccomp loads
LIBRARY_DIRS = ("/lib", "/usr/lib", "/lib64", "/usr/lib64")


def _file_id(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{os.path.realpath(path)}:{st.st_size}:{st.st_mtime_ns}"


def library_identity() -> list[str] | None:
    """What the compiled program depends on besides the rules, found without importing pyseccomp:
    every ``libseccomp.so.2`` in the dynamic linker's directories (ld.so.conf(5)) and the binding's
    own file, each as ``realpath:size:mtime`` — an upgraded library or binding changes the key.
    None if the library is not found (then compile_bpf imports pyseccomp and says why)."""
    import importlib.util
    import glob
    dirs = list(LIBRARY_DIRS)
    for conf in sorted(glob.glob("/etc/ld.so.conf.d/*.conf")):
        try:
            with open(conf) as f:
                dirs += [ln.strip() for ln in f if ln.strip().startswith("/")]
        except OSError:
            pass
    libs = sorted({i for i in (_file_id(os.path.join(d, LIBRARY)) for d in dirs) if i})
    spec = importlib.util.find_spec("pyseccomp")
    binding = _file_id(spec.origin) if spec and spec.origin else None
    return libs + [binding] if libs and binding else None


def cache_key(oci_seccomp: dict) -> str:
    """The cache key of an OCI ``linux.seccomp`` object: sha256 of the rules, the machine and
    :func:`library_identity` (the libseccomp API level is asked from the library when that fails)."""
    import hashlib
    ident = library_identity()
    if ident is None:
        sc = _seccomp()
        ident = [getattr(sc, "__version__", "?"), sc.get_api()]
    key_src = json.dumps([oci_seccomp, os.uname().machine, ident], sort_keys=True)
    return hashlib.sha256(key_src.encode()).hexdigest()


def compile_bpf(oci_seccomp: dict) -> tuple[bytes, list[str]]:
    """The classic-BPF program for an OCI ``linux.seccomp`` object, and the syscall names libseccomp
    did not know (left out). Cached in memory and on disk (see the module docstring). The memory
    cache is keyed by the rules alone (one process sees one library), so a container's init, which
    calls this after pivot_root (:func:`install`), finds what its parent compiled before the fork."""
    rules = json.dumps(oci_seccomp, sort_keys=True)
    if rules in _memory:
        return _memory[rules]
    path = os.path.join(_cache_dir(), cache_key(oci_seccomp) + ".bpf")
    try:
        with open(path, "rb") as f:
            cached = json.loads(f.read())
        _memory[rules] = (bytes.fromhex(cached["bpf"]), cached["skipped"])
        return _memory[rules]
    except (OSError, ValueError, KeyError):
        pass
    program, skipped = _compile(_seccomp(), oci_seccomp)
    _memory[rules] = (program, skipped)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(path, json.dumps({"bpf": program.hex(), "skipped": skipped}), fsync=False)
    except OSError:
        pass  # a read-only home: the memory cache still helps
    return program, skipped


def _compile(sc, oci: dict) -> tuple[bytes, list[str]]:
    default = _action(sc, oci.get("defaultAction", "SCMP_ACT_ERRNO"), oci.get("defaultErrnoRet"))
    flt = sc.SyscallFilter(default)
    for arch in oci.get("architectures") or []:
        value = getattr(sc.Arch, arch.replace("SCMP_ARCH_", ""), None)
        if value is None:
            raise SeccompError(f"unknown seccomp architecture {arch!r}")
        try:
            flt.add_arch(value)
        except OSError:
            pass  # EEXIST: the native architecture is always in the filter
    ops, skipped = _ops(sc), []
    for rule in oci.get("syscalls") or []:
        action = _action(sc, rule["action"], rule.get("errnoRet"))
        args = []
        for a in rule.get("args") or []:
            if a["op"] not in ops:
                raise SeccompError(f"unknown seccomp operator {a['op']!r}")
            args.append(sc.Arg(a["index"], ops[a["op"]], a.get("value", 0), a.get("valueTwo", 0)))
        for name in rule["names"]:
            if action == default:
                continue  # libseccomp refuses a rule that repeats the default action
            try:
                flt.add_rule(action, name, *args)
            except OSError:
                skipped.append(name)
    import tempfile
    with tempfile.TemporaryFile() as f:
        flt.export_bpf(f)
        f.seek(0)
        return f.read(), sorted(set(skipped))


def install(kernel, oci_seccomp: dict) -> None:
    """Load the filter for ``oci_seccomp`` into the calling thread (``kernel.seccomp_load``).

    Needs no_new_privs or CAP_SYS_ADMIN (EACCES otherwise): call it in pid 1 while it still holds its
    capabilities (runc's order), as late as possible, because every later call must pass the filter.
    ``flags`` of the OCI object (SECCOMP_FILTER_FLAG_TSYNC, _LOG, _SPEC_ALLOW) are passed on.
    """
    flags = 0
    for name in oci_seccomp.get("flags") or []:
        if name not in FLAGS:
            raise SeccompError(f"unknown seccomp flag {name!r}")
        flags |= FLAGS[name]
    program, _ = compile_bpf(oci_seccomp)
    kernel.seccomp_load(program, flags)

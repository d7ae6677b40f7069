"""The device cgroup: which device nodes a container may open, whatever nodes it has.

What this teaches
-----------------
A device node is just a (type, major, minor) triple on disk. A container root with CAP_MKNOD can
create ``/tmp/sda`` as block device 8:0 — the host's first disk — in its own rootfs and open it:
mount namespaces do not stop that, because the node is *made*, not mounted. Docker keeps CAP_MKNOD
(package managers create nodes) and closes the hole one layer below, in the cgroup: the kernel asks
the container's device cgroup on every open(2) and mknod(2) of a device node. Docker's rules
(:data:`DEFAULT_RULES`, OCI ``linux.resources.devices``): deny everything; allow ``mknod`` of any
character and block device (``c *:* m``, ``b *:* m``); allow read, write and mknod (``rwm``) only on
the default nodes (:data:`DEFAULT_DEVICES`: null zero full random urandom tty, plus console, ptmx and
the pty slaves 136:*). ``mknod /tmp/sda b 8 0`` works; opening it fails with EPERM.

Two implementations, one per cgroup version:

* **v1** (:func:`apply_v1`): the ``devices`` controller's files. Writing ``a`` to ``devices.deny``
  empties the allow list; each rule is then one line (``c 1:3 rwm``) written to ``devices.allow``
  or ``devices.deny``.
* **v2** (:func:`attach_v2`): there is no devices controller; instead a BPF program of type
  BPF_PROG_TYPE_CGROUP_DEVICE, attached to the cgroup directory with BPF_PROG_ATTACH, answers each
  access (1 allow, 0 deny). The kernel gives it ``struct bpf_cgroup_dev_ctx {u32 access_type;
  u32 major; u32 minor;}``, the access type being ``(BPF_DEVCG_ACC_* << 16) | BPF_DEVCG_DEV_*``.
  :func:`program` assembles it from the rules, as runc's devicefilter does: the rules are tested
  last to first and the first match decides (so later rules override earlier ones, as on v1), and
  no match means deny. Why our own assembler and not a library: the program is a dozen instruction
  kinds (load a word, and, shift, compare-and-jump, move, exit), the only eBPF compilers are
  clang/bcc (a C toolchain at run time) and Python bindings over libbpf expect an object file; and
  seeing the instructions is the lesson. The kernel's verifier checks the program when it is loaded.

Man pages and specs followed: the kernel's Documentation/admin-guide/cgroup-v1/devices.rst and
cgroup-v2.rst ("Device controller"), bpf(2), linux/bpf.h (struct bpf_insn, bpf_attr,
bpf_cgroup_dev_ctx), OCI config-linux.md "Devices" and "Device allowlist"; moby oci/defaults.go.
"""
from __future__ import annotations

import ctypes
import errno
import os
import stat
import struct

from minidocker import rootfs
from minidocker.kernel import KernelError, Linux

# --- Docker's defaults --------------------------------------------------------------------------

# OCI linux.devices: the nodes a container gets (the rootfs chapter creates them; listed here in the
# OCI shape a config.json carries). /dev/ptmx is a symlink into the container's devpts instead.
DEFAULT_DEVICES: list[dict] = [
    {"path": d.path, "type": "c", "major": d.major, "minor": d.minor, "fileMode": stat.S_IFCHR | d.mode,
     "uid": 0, "gid": 0}
    for d in rootfs.DEFAULT_DEVICES
]


def _rule(allow: bool, type_: str = "a", major: int | None = None, minor: int | None = None,
          access: str = "rwm") -> dict:
    r = {"allow": allow, "type": type_, "access": access}
    if major is not None:
        r["major"] = major
    if minor is not None:
        r["minor"] = minor
    return r


# OCI linux.resources.devices as a default Docker container gets them (moby's list plus the ones
# runc always adds): first deny all, then allow.
DEFAULT_RULES: list[dict] = [
    _rule(False),                                   # a *:* rwm: deny everything ...
    _rule(True, "c", access="m"),                   # ... but creating any node is fine: c *:* m
    _rule(True, "b", access="m"),                   # b *:* m
    *[_rule(True, "c", d["major"], d["minor"]) for d in DEFAULT_DEVICES],   # null zero full random urandom tty
    _rule(True, "c", 5, 1),                         # /dev/console
    _rule(True, "c", 5, 2),                         # /dev/pts/ptmx
    _rule(True, "c", 136),                          # /dev/pts/* (the pty slaves)
    _rule(False, "c", 10, 229),                     # /dev/fuse (moby denies it explicitly)
]


def rule_line(rule: dict) -> str:
    """``{"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}`` -> ``c 1:3 rwm``
    (the v1 file format; a missing major/minor is ``*``, a missing type ``a``)."""
    t = rule.get("type") or "a"
    if t == "a":
        return "a"
    major = "*" if rule.get("major") in (None, -1) else str(rule["major"])
    minor = "*" if rule.get("minor") in (None, -1) else str(rule["minor"])
    return f"{t} {major}:{minor} {rule.get('access') or 'rwm'}"


def _check_rule(rule: dict) -> None:
    if (rule.get("type") or "a") not in ("a", "b", "c"):
        raise ValueError(f"device rule {rule!r}: type must be a, b or c")
    if not set(rule.get("access") or "rwm") <= set("rwm"):
        raise ValueError(f"device rule {rule!r}: access must be made of r, w and m")


# --- cgroup v1 ----------------------------------------------------------------------------------

def apply_v1(cgroup_dir: str, rules: list[dict], kernel=None) -> None:
    """Write ``rules`` into the v1 devices cgroup ``cgroup_dir`` (e.g.
    /sys/fs/cgroup/devices/<parent>/<id>). A rule that is a deny-all resets the list (``a`` to
    devices.deny); the others are appended in order. A cgroup can never allow more than its parent."""
    kernel = kernel or Linux()
    for rule in rules:
        _check_rule(rule)
        name = "devices.allow" if rule.get("allow") else "devices.deny"
        kernel.write_file(os.path.join(cgroup_dir, name), rule_line(rule))


# --- cgroup v2: an eBPF program -----------------------------------------------------------------

BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6               # attach type
BPF_PROG_LOAD, BPF_PROG_ATTACH, BPF_PROG_DETACH = 5, 8, 9
BPF_PROG_GET_FD_BY_ID, BPF_OBJ_GET_INFO_BY_FD, BPF_PROG_QUERY = 13, 15, 16
BPF_F_ALLOW_MULTI = 2
DEV_TYPE = {"b": 1, "c": 2}                 # BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR
ACCESS = {"m": 1, "r": 2, "w": 4}           # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE

# eBPF opcodes (linux/bpf_common.h, linux/bpf.h): class | operation | source.
_LDX_W = 0x61        # BPF_LDX | BPF_MEM | BPF_W:   dst = *(u32 *)(src + off)
_AND_K = 0x54        # BPF_ALU | BPF_AND | BPF_K:   dst &= imm   (32-bit)
_RSH_K = 0x74        # BPF_ALU | BPF_RSH | BPF_K:   dst >>= imm
_MOV_X = 0xBC        # BPF_ALU | BPF_MOV | BPF_X:   dst = src
_MOV_K = 0xB4        # BPF_ALU | BPF_MOV | BPF_K:   dst = imm
_JNE_K = 0x55        # BPF_JMP | BPF_JNE | BPF_K:   if dst != imm: pc += off
_JNE_X = 0x5D        # BPF_JMP | BPF_JNE | BPF_X:   if dst != src: pc += off
_JEQ_K = 0x15        # BPF_JMP | BPF_JEQ | BPF_K:   if dst == imm: pc += off
_EXIT = 0x95         # BPF_JMP | BPF_EXIT:          return r0


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One ``struct bpf_insn``: u8 code, u8 dst:4|src:4, s16 off, s32 imm (little-endian)."""
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def program(rules: list[dict]) -> bytes:
    """Assemble the BPF_PROG_TYPE_CGROUP_DEVICE program for ``rules`` (see the module docstring).

    Registers: r1 = the context on entry; r2 = device type, r3 = requested access, r4 = major,
    r5 = minor; r1 is scratch afterwards; r0 = the verdict. An *allow* rule matches when every
    requested access is in its access string; a *deny* rule when any of them is.
    """
    out = [_insn(_LDX_W, 2, 1, 0), _insn(_AND_K, 2, imm=0xFFFF),    # r2 = access_type & 0xffff
           _insn(_LDX_W, 3, 1, 0), _insn(_RSH_K, 3, imm=16),        # r3 = access_type >> 16
           _insn(_LDX_W, 4, 1, 4), _insn(_LDX_W, 5, 1, 8)]          # r4 = major, r5 = minor
    for rule in reversed(rules):
        _check_rule(rule)
        tests: list[tuple] = []   # (code, dst, src, imm) of jumps taken when the rule does NOT match
        t = rule.get("type") or "a"
        if t != "a":
            tests.append(("jump", _JNE_K, 2, 0, DEV_TYPE[t]))
        acc = 0
        for ch in rule.get("access") or "rwm":
            acc |= ACCESS[ch]
        if acc != 7:
            tests.append(("op", _MOV_X, 1, 3, 0))
            tests.append(("op", _AND_K, 1, 0, acc))
            if rule.get("allow"):
                tests.append(("jump", _JNE_X, 1, 3, 0))   # requested & acc != requested
            else:
                tests.append(("jump", _JEQ_K, 1, 0, 0))   # requested & acc == 0
        if t != "a" and rule.get("major") not in (None, -1):
            tests.append(("jump", _JNE_K, 4, 0, rule["major"]))
        if t != "a" and rule.get("minor") not in (None, -1):
            tests.append(("jump", _JNE_K, 5, 0, rule["minor"]))
        body_len = len(tests) + 2                          # the tests, mov r0, exit
        for i, (kind, code, dst, src, imm) in enumerate(tests):
            off = body_len - i - 1 if kind == "jump" else 0   # to the first insn after this block
            out.append(_insn(code, dst, src, off, imm))
        out += [_insn(_MOV_K, 0, imm=1 if rule.get("allow") else 0), _insn(_EXIT)]
        if not tests:   # matches everything (``a`` deny-all): earlier rules are never reached, and
            return b"".join(out)   # the verifier refuses unreachable instructions
    out += [_insn(_MOV_K, 0, imm=0), _insn(_EXIT)]          # nothing matched: deny
    return b"".join(out)


def _ptr(buf) -> int:
    return ctypes.addressof(buf)


def _attached(kernel, dir_fd: int) -> list[int]:
    """Ids of the device programs attached to the cgroup (BPF_PROG_QUERY)."""
    ids = (ctypes.c_uint32 * 64)()
    attr = bytearray(struct.pack("<IIIIQI4x", dir_fd, BPF_CGROUP_DEVICE, 0, 0, _ptr(ids), 64))
    kernel.bpf(BPF_PROG_QUERY, attr)
    count = struct.unpack_from("<I", attr, 24)[0]   # the kernel writes back how many it returned
    return [i for i in ids[:count] if i]             # (ids start at 1; a dry run leaves zeros)


def _detach_id(kernel, dir_fd: int, prog_id: int) -> None:
    fd = kernel.bpf(BPF_PROG_GET_FD_BY_ID, struct.pack("<III", prog_id, 0, 0))
    try:
        kernel.bpf(BPF_PROG_DETACH, struct.pack("<IIIII", dir_fd, fd, BPF_CGROUP_DEVICE, 0, 0))
    finally:
        kernel.close(fd)


def attach_v2(kernel, cgroup_dir: str, rules: list[dict]) -> int:
    """Load the program for ``rules`` and attach it to the cgroup v2 directory ``cgroup_dir``,
    replacing device programs attached there before (runc's way: attach the new one with
    BPF_F_ALLOW_MULTI first, then detach the old ones, so there is no moment without a filter).
    Returns the new program's id (``bpftool prog show id N``); its fd is closed, the attachment
    keeps the program alive until :func:`detach_v2` or the cgroup's removal."""
    insns = program(rules)
    code = ctypes.create_string_buffer(insns, len(insns))
    license_ = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(65536)
    attr = struct.pack("<IIQQIIQII16sII", BPF_PROG_TYPE_CGROUP_DEVICE, len(insns) // 8, _ptr(code),
                       _ptr(license_), 1, len(log), _ptr(log), 0, 0, b"minidocker_dev", 0, 0)
    dir_fd = kernel.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        old = _attached(kernel, dir_fd)
        try:
            prog_fd = kernel.bpf(BPF_PROG_LOAD, attr)
        except KernelError as e:
            verifier = log.value.decode(errors="replace").strip()
            if verifier:
                e.add_note("verifier log: " + verifier[-2000:])
            raise
        try:
            kernel.bpf(BPF_PROG_ATTACH, struct.pack("<IIIII", dir_fd, prog_fd, BPF_CGROUP_DEVICE,
                                                    BPF_F_ALLOW_MULTI, 0))
            info = (ctypes.c_uint32 * 2)()
            kernel.bpf(BPF_OBJ_GET_INFO_BY_FD, struct.pack("<IIQ", prog_fd, 8, _ptr(info)))
            prog_id = info[1]
        finally:
            kernel.close(prog_fd)
        for old_id in old:
            _detach_id(kernel, dir_fd, old_id)
        return prog_id
    finally:
        kernel.close(dir_fd)


def detach_v2(kernel, cgroup_dir: str) -> None:
    """Detach every device program from the cgroup v2 directory (nothing attached: nothing to do)."""
    try:
        dir_fd = kernel.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return
    try:
        for prog_id in _attached(kernel, dir_fd):
            try:
                _detach_id(kernel, dir_fd, prog_id)
            except KernelError as e:
                if e.errno != errno.ENOENT:
                    raise
    finally:
        kernel.close(dir_fd)

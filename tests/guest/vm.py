"""A throw-away qemu guest with a pure cgroup v2 hierarchy, to test the v2 driver for real.

Why: this host is *hybrid* (v1 controllers + a controller-less v2 tree). Moving the controllers to
v2 would break the host, so the v2 driver's limits (memory.max, pids.max, cpu.max, cgroup.freeze)
are tested in a guest kernel that mounts only cgroup2:

* the kernel: Debian's ``linux-image-<abi>-amd64`` (``apt-get download`` + ``dpkg-deb -x``), cached
  in ``.cache/cgroup-v2/`` (gitignored) so only the first run downloads it;
* the initramfs: a static busybox, the virtio/9p modules, and ``/init`` (written below) — built
  here as a "newc" cpio archive, no tool needed;
* the host's ``/`` shared read-only over virtio-9p, so the guest runs the host's Python and this
  checkout; ``/tmp`` and ``/sys/fs/cgroup`` (cgroup2) are the guest's own;
* software emulation (``-accel tcg``): KVM is not available on the CI machine.

The guest runs ``cgroup_v2_checks.py`` and prints one ``MINIDOCKER-V2-RESULTS {json}`` line on the
serial console, then powers off. :func:`run_guest` returns that JSON.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.path.join(REPO, ".cache", "cgroup-v2")
MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")
MARK = "MINIDOCKER-V2-RESULTS "

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules/order); do insmod /modules/$m.ko || echo "insmod $m failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 hostroot /host || echo "9p mount failed"
mount -t proc proc /host/proc
mount -t sysfs sysfs /host/sys
mount -t cgroup2 cgroup2 /host/sys/fs/cgroup
mount -t devtmpfs devtmpfs /host/dev
# The checkout may live under /tmp or /run (a CI clone, say), which get the guest's own tmpfs
# next: keep a handle on it first, and put it back at the same path afterwards.
mkdir -p /repo && mount -o bind /host__REPO__ /repo
mount -t tmpfs tmpfs /host/tmp
mount -t tmpfs tmpfs /host/run
mkdir -p /host__REPO__ 2>/dev/null; mount -o bind /repo /host__REPO__
chroot /host /usr/bin/env -i __ENV__ __PYTHON__ -S -B __CHECKS__ __REPO__
echo "guest checks exited $?"
poweroff -f
"""


def kernel_package() -> str:
    """The newest ``linux-image-X-amd64`` Debian offers (what ``linux-image-amd64`` depends on)."""
    out = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True,
                         check=True).stdout
    m = re.search(r"Depends: (linux-image-\S+-amd64)", out)
    if not m:
        raise RuntimeError(f"cannot find the kernel package behind linux-image-amd64: {out!r}")
    return m.group(1)


def fetch_kernel() -> str:
    """Download and unpack the kernel package once; return the unpacked tree."""
    os.makedirs(CACHE, exist_ok=True)
    tree = os.path.join(CACHE, "x")
    if glob.glob(os.path.join(tree, "boot", "vmlinuz-*")):
        return tree
    if not glob.glob(os.path.join(CACHE, "linux-image-*.deb")):
        subprocess.run(["apt-get", "download", kernel_package()], cwd=CACHE, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deb = sorted(glob.glob(os.path.join(CACHE, "linux-image-*.deb")))[-1]
    tmp = tree + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", deb, tmp], check=True)
    os.rename(tmp, tree)
    return tree


def module_order(tree: str, wanted=MODULES) -> list[str]:
    """The .ko files for ``wanted`` and their dependencies, dependencies first. The package ships no
    modules.dep (depmod makes it at install), so read each module's ``depends=`` from .modinfo."""
    index = {}
    for path in glob.glob(os.path.join(tree, "lib", "modules", "*", "kernel", "**", "*.ko"), recursive=True):
        index[os.path.basename(path)[:-3].replace("-", "_")] = path
    order: list[str] = []

    def visit(name):
        if name in order:
            return
        with open(index[name], "rb") as f:
            m = re.search(rb"depends=([^\0]*)\0", f.read())
        for dep in (m.group(1).decode().split(",") if m else []):
            if dep:
                visit(dep.replace("-", "_"))
        order.append(name)

    for name in wanted:
        visit(name)
    return [index[n] for n in order]


def cpio_newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A "newc" cpio archive (the initramfs format, see the kernel's initramfs docs)."""
    out = bytearray()
    ino = 1
    for name, mode, data in entries + [("TRAILER!!!", 0, b"")]:
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{v:08x}" for v in (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0))
        out += hdr.encode() + nb
        out += b"\0" * (-len(out) % 4)
        out += data
        out += b"\0" * (-len(out) % 4)
        ino += 1
    return bytes(out)


def guest_env() -> dict[str, str]:
    """The environment the checks (and the minidockerd they start) get in the guest. ``python -S``
    skips the site module, so the packages the daemon needs beyond the standard library (h11 for its
    HTTP layer, pyseccomp) are found through PYTHONPATH: this checkout, then the site-packages of
    the interpreter running the tests (the project's venv)."""
    import site
    paths = [REPO] + [p for p in site.getsitepackages() if os.path.isdir(p)]
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/tmp", "PYTHONPATH": ":".join(paths)}


def build_initramfs(tree: str, path: str, python: str) -> None:
    mods = module_order(tree)
    d, f = stat.S_IFDIR | 0o755, stat.S_IFREG
    entries = [(n, d, b"") for n in ("bin", "proc", "sys", "dev", "host", "modules")]
    with open("/bin/busybox", "rb") as fh:
        entries.append(("bin/busybox", f | 0o755, fh.read()))
    for m in mods:
        with open(m, "rb") as fh:
            entries.append((f"modules/{os.path.basename(m)}", f | 0o644, fh.read()))
    order = "\n".join(os.path.basename(m)[:-3] for m in mods) + "\n"
    entries.append(("modules/order", f | 0o644, order.encode()))
    env = " ".join(f"{k}={v}" for k, v in guest_env().items())
    init = (INIT.replace("__PYTHON__", python).replace("__REPO__", REPO).replace("__ENV__", env)
            .replace("__CHECKS__", os.path.join(REPO, "tests", "guest", "cgroup_v2_checks.py")))
    entries.append(("init", f | 0o755, init.encode()))
    with open(path, "wb") as fh:
        fh.write(cpio_newc(entries))


def run_guest(timeout: float = 240) -> tuple[dict | None, str]:
    """Boot the guest, run the checks; return (results or None, the console log)."""
    tree = fetch_kernel()
    kernel = sorted(glob.glob(os.path.join(tree, "boot", "vmlinuz-*")))[-1]
    work = tempfile.mkdtemp(prefix="md-v2guest-")
    try:
        initrd = os.path.join(work, "initrd")
        build_initramfs(tree, initrd, os.path.realpath(sys.executable))
        cmd = ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "1024",
               "-nographic", "-no-reboot", "-kernel", kernel, "-initrd", initrd,
               "-append", "console=ttyS0 panic=-1 quiet rdinit=/init",
               "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"]
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        log = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
        for line in log.splitlines():
            if line.startswith(MARK):
                return json.loads(line[len(MARK):]), log
        return None, log
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    res, log = run_guest()
    print(log if res is None else json.dumps(res, indent=1))

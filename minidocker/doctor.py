"""minidocker doctor: what this host supports, read straight from the kernel's own files.

What this teaches
-----------------
Everything a container engine needs to know about a machine is published by the kernel as plain
text, and reading it takes microseconds:

* ``/proc/self/mountinfo`` says which cgroup hierarchies are mounted where, and which controllers
  each carries (v1: one hierarchy per controller set, named in the mount's super options; v2: a single
  hierarchy whose controllers are listed in its ``cgroup.controllers`` file). A "hybrid" host has both.
* ``/proc/cgroups`` lists the controllers compiled into the kernel (hierarchy 0 = not bound to v1).
* ``/proc/filesystems`` lists the filesystem types the kernel can mount (``overlay`` for union mounts).
  An overlay's upper directory cannot itself live on overlayfs, so the state directory's filesystem
  type matters too.
* ``/proc/self/ns`` has one link per namespace type the kernel supports; its target
  (``mnt:[4026531841]``) is the namespace's identity.
* ``/proc/sys/user/max_user_namespaces`` is 0 when user namespaces are switched off.
* ``/proc/self/status`` ``CapEff`` is the capability mask: uid 0 is not the same as "may mount".
* Whether we are inside a container is only ever a guess from traces left by engines:
  ``/.dockerenv``, ``/run/.containerenv``, ``container=`` in pid 1's environment, an overlay root.
* The daemon is just an HTTP server on a UNIX socket: ``GET /_ping`` and ``GET /info`` written by hand
  on a socket show the whole protocol.

The result is a plain dict (``collect``), a readable report (``report``) and a verdict per chapter:
runnable, limited, or not runnable, and why.

    python -m minidocker.doctor [--json] [--host unix:///run/minidocker.sock] [--root DIR]
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import NamedTuple

DEFAULT_HOST = "unix:///run/minidocker.sock"
DEFAULT_ROOT = "/var/lib/minidocker"
CGROUP_ROOT = "/sys/fs/cgroup"
BUSYBOX = "/bin/busybox"

#: Tools the chapters, the tests or the benchmarks use; value = why.
TOOLS = {
    "busybox": "the offline base image (busybox-static)",
    "dot": "diagrams (graphviz)",
    "ip": "network chapter checks (iproute2)",
    "nft": "network chapter: NAT and published ports (nftables)",
    "docker": "the real docker client, for compatibility tests",
    "runc": "reference runtime (bench, comparisons)",
    "crun": "reference runtime (bench)",
    "podman": "reference engine (bench)",
    "skopeo": "reference image copier (registry chapter)",
    "umoci": "reference image unpacker (images chapter)",
    "docker-registry": "reference registry (registry chapter)",
    "qemu-system-x86_64": "guest with full cgroup v2 (cgroups chapter)",
}

#: Chapter number -> topic, in reading order.
CHAPTERS = {
    "00": "kernel calls",
    "01": "namespaces",
    "02": "rootfs",
    "03": "cgroups",
    "04": "union mounts",
    "05": "copy-on-write",
    "06": "images",
    "07": "registry",
    "08": "daemon/API",
    "09": "OCI runtime",
    "10": "security",
    "11": "networking",
    "12": "volumes and storage",
    "13": "build",
}

# capability(7) numbers worth naming in a report (linux/capability.h).
CAPABILITIES = {
    0: "CAP_CHOWN", 1: "CAP_DAC_OVERRIDE", 2: "CAP_DAC_READ_SEARCH", 3: "CAP_FOWNER",
    4: "CAP_FSETID", 5: "CAP_KILL", 6: "CAP_SETGID", 7: "CAP_SETUID", 8: "CAP_SETPCAP",
    9: "CAP_LINUX_IMMUTABLE", 10: "CAP_NET_BIND_SERVICE", 11: "CAP_NET_BROADCAST",
    12: "CAP_NET_ADMIN", 13: "CAP_NET_RAW", 14: "CAP_IPC_LOCK", 15: "CAP_IPC_OWNER",
    16: "CAP_SYS_MODULE", 17: "CAP_SYS_RAWIO", 18: "CAP_SYS_CHROOT", 19: "CAP_SYS_PTRACE",
    20: "CAP_SYS_PACCT", 21: "CAP_SYS_ADMIN", 22: "CAP_SYS_BOOT", 23: "CAP_SYS_NICE",
    24: "CAP_SYS_RESOURCE", 25: "CAP_SYS_TIME", 26: "CAP_SYS_TTY_CONFIG", 27: "CAP_MKNOD",
    28: "CAP_LEASE", 29: "CAP_AUDIT_WRITE", 30: "CAP_AUDIT_CONTROL", 31: "CAP_SETFCAP",
    32: "CAP_MAC_OVERRIDE", 33: "CAP_MAC_ADMIN", 34: "CAP_SYSLOG", 35: "CAP_WAKE_ALARM",
    36: "CAP_BLOCK_SUSPEND", 37: "CAP_AUDIT_READ", 38: "CAP_PERFMON", 39: "CAP_BPF",
    40: "CAP_CHECKPOINT_RESTORE",
}

# pid-1 names of ordinary init systems; anything else as pid 1 hints at a container (or a VM agent).
HOST_INITS = {"systemd", "init", "openrc-init", "runit", "runit-init", "s6-svscan", "upstart"}

# Filesystems an overlay upper directory cannot (overlay) or should not (network, FUSE) live on.
BAD_UPPER_FS = {"overlay": "an overlay upper cannot be on overlayfs itself",
                "aufs": "an overlay upper cannot be on aufs",
                "nfs": "overlay upper on NFS is unsupported", "nfs4": "overlay upper on NFS is unsupported",
                "cifs": "overlay upper on CIFS is unsupported"}


# --- small readers -----------------------------------------------------------------------------

def read_text(path: str, default: str | None = None) -> str | None:
    """The content of a /proc or /sys file, or ``default`` if it is missing or unreadable."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def parse_mountinfo(text: str) -> list[dict]:
    """/proc/PID/mountinfo (proc(5)) as dicts for the JSON report, in mount order; the parsing is
    :func:`minidocker.rootfs.parse_mountinfo` (``dev`` is its ``major_minor``)."""
    from .rootfs import parse_mountinfo as parse
    return [{**e.as_dict(), "dev": e.major_minor} for e in parse(text)]


def parse_proc_cgroups(text: str) -> dict[str, dict]:
    """/proc/cgroups: ``subsys_name hierarchy num_cgroups enabled`` -> {name: {hierarchy, enabled}}."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, hierarchy, _num, enabled = line.split()[:4]
        out[name] = {"hierarchy": int(hierarchy), "enabled": enabled == "1"}
    return out


def mount_for(path: str, mounts: list[dict]) -> dict | None:
    """The mount a path lives on: the longest mount point that prefixes it (the last one wins when a
    mount point is mounted over)."""
    path = os.path.realpath(path)
    best = None
    for m in mounts:
        mp = m["mountpoint"]
        if path == mp or path.startswith(mp.rstrip("/") + "/"):
            if best is None or len(mp) >= len(best["mountpoint"]):
                best = m
    return best


def nearest_existing(path: str) -> str:
    """``path`` itself, or the closest parent directory that exists."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return str(p)


# --- the items ---------------------------------------------------------------------------------

def kernel_info() -> dict:
    u = os.uname()
    return {"release": u.release, "version": u.version, "machine": u.machine}


def cgroup_info(mounts: list[dict], proc_cgroups: dict[str, dict]) -> dict:
    """Which cgroup layout this host has, and the controllers of each hierarchy.

    v2: cgroup2 mounted at /sys/fs/cgroup (it has a cgroup.controllers file).
    v1: one ``cgroup`` mount per hierarchy; its super options name its controllers (``rw,cpu,cpuacct``)
        or, for a named hierarchy without controllers, ``name=systemd``.
    hybrid: v1 hierarchies plus a cgroup2 mount (usually /sys/fs/cgroup/unified) that carries only the
        controllers v1 does not hold.
    """
    known = set(proc_cgroups)
    v1, v2, seen = [], [], set()
    for m in mounts:
        if m["fstype"] not in ("cgroup", "cgroup2") or m["dev"] in seen:
            continue  # a hierarchy bind-mounted twice is still one hierarchy
        seen.add(m["dev"])
        if m["fstype"] == "cgroup":
            opts = m["super_options"].split(",")
            names = [o[5:] for o in opts if o.startswith("name=")]
            v1.append({"mountpoint": m["mountpoint"],
                       "controllers": [o for o in opts if o in known],
                       "name": names[0] if names else None})
        else:
            ctl = read_text(os.path.join(m["mountpoint"], "cgroup.controllers"), "")
            v2.append({"mountpoint": m["mountpoint"], "controllers": ctl.split()})

    v2_at_root = any(h["mountpoint"] == CGROUP_ROOT for h in v2)
    if v2_at_root and not v1:
        layout = "v2"
    elif v1 and v2:
        layout = "hybrid"
    elif v1:
        layout = "v1"
    elif v2:
        layout = "v2"  # cgroup2 mounted somewhere unusual
    else:
        layout = "none"
    in_v1 = {c for h in v1 for c in h["controllers"]}
    unbound = sorted(n for n, s in proc_cgroups.items() if s["enabled"] and n not in in_v1)
    return {"layout": layout, "v1": v1, "v2": v2, "kernel_controllers": sorted(known),
            "not_in_v1": unbound}


def overlay_info(filesystems: str, mounts: list[dict], root: str) -> dict:
    """Is overlayfs in the kernel, and can the state directory's filesystem be an overlay upper?"""
    supported = any(line.split()[-1] == "overlay" for line in filesystems.splitlines() if line.split())
    checked = nearest_existing(root)
    m = mount_for(checked, mounts)
    fstype = m["fstype"] if m else "unknown"
    problem = BAD_UPPER_FS.get(fstype) or ("FUSE upper is unsupported" if fstype.startswith("fuse") else None)
    return {"supported": supported, "root": root, "checked": checked, "fstype": fstype,
            "upper_ok": supported and problem is None, "problem": problem}


def storage_driver_info(filesystems: str, overlay: dict) -> dict:
    """Which storage drivers (minidocker/unionfs.py) minidockerd could use with this state directory:
    driver -> "" if usable, else why not. copy works everywhere."""
    has = {line.split()[-1] for line in filesystems.splitlines() if line.split()}
    out = {"overlay": "" if overlay["upper_ok"] else (overlay["problem"] or "no overlay in the kernel"),
           "copy": ""}
    if "btrfs" not in has:
        out["btrfs"] = "no btrfs in the kernel"
    elif shutil.which("btrfs") is None:
        out["btrfs"] = "the 'btrfs' command is missing (btrfs-progs)"
    elif overlay["fstype"] != "btrfs":
        out["btrfs"] = f"{overlay['checked']} is on {overlay['fstype']}, not btrfs"
    else:
        out["btrfs"] = ""
    return out


def userns_info() -> dict:
    raw = read_text("/proc/sys/user/max_user_namespaces")
    maximum = int(raw) if raw and raw.strip().isdigit() else None
    clone = read_text("/proc/sys/kernel/unprivileged_userns_clone")  # Debian/Ubuntu patch only
    clone = int(clone) if clone and clone.strip().isdigit() else None
    return {"max_user_namespaces": maximum, "unprivileged_userns_clone": clone,
            "available": bool(maximum), "unprivileged": bool(maximum) and clone != 0}


def namespace_info() -> dict:
    """The namespace types in /proc/self/ns, each with our current namespace's identity."""
    ids = {}
    for entry in sorted(os.listdir("/proc/self/ns")):
        if entry.endswith("_for_children"):
            continue  # pid_for_children/time_for_children: where our next child goes, not a type
        try:
            ids[entry] = os.readlink(f"/proc/self/ns/{entry}")
        except OSError as e:
            ids[entry] = f"unreadable ({e.strerror})"
    return {"types": list(ids), "ids": ids}


def container_info(mounts: list[dict]) -> dict:
    """Guess whether we run inside a container from the traces engines leave behind."""
    signals, notes = [], []
    for path, who in (("/.dockerenv", "docker"), ("/run/.containerenv", "podman")):
        if os.path.exists(path):
            signals.append(f"{path} exists ({who} creates it)")
    env = read_text("/proc/1/environ")
    if env is None:
        notes.append("pid 1's environment is unreadable")
    else:
        for var in env.split("\0"):
            if var.startswith("container="):
                signals.append(f"pid 1 has {var}")
    root = mount_for("/", mounts)
    if root and root["fstype"] == "overlay":
        signals.append("/ is an overlay mount")
    pid1 = (read_text("/proc/1/comm") or "?").strip()
    if pid1 not in HOST_INITS:
        notes.append(f"pid 1 is '{pid1}', not an init system")
    return {"inside": bool(signals), "signals": signals, "notes": notes, "pid1": pid1,
            "root_fstype": root["fstype"] if root else "unknown"}


def python_info() -> dict:
    v = sys.version_info
    # tarfile extraction filters were added in 3.12 and backported to 3.11.4.
    tar_filters = v >= (3, 12) or (v[:2] == (3, 11) and v.micro >= 4)
    return {"version": "%d.%d.%d" % v[:3], "executable": sys.executable,
            "os_unshare": hasattr(os, "unshare"), "os_setns": hasattr(os, "setns"),
            "tarfile_filters": tar_filters}


def capability_info() -> dict:
    status = read_text("/proc/self/status", "")
    eff = 0
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            eff = int(line.split()[1], 16)
    last = int((read_text("/proc/sys/kernel/cap_last_cap") or "40").strip())
    have = [CAPABILITIES.get(i, f"cap{i}") for i in range(last + 1) if eff >> i & 1]
    missing = [CAPABILITIES.get(i, f"cap{i}") for i in range(last + 1) if not eff >> i & 1]
    return {"euid": os.geteuid(), "root": os.geteuid() == 0, "cap_eff": f"{eff:016x}",
            "missing": missing, "sys_admin": "CAP_SYS_ADMIN" in have,
            "net_admin": "CAP_NET_ADMIN" in have}


def tool_info() -> dict[str, str | None]:
    """Path of each tool, or None. sbin directories are searched too (``ip`` lives in /usr/sbin)."""
    path = os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin"
    tools = {name: shutil.which(name, path=path) for name in TOOLS}
    tools["busybox"] = BUSYBOX if os.access(BUSYBOX, os.X_OK) else None
    return tools


# --- the daemon --------------------------------------------------------------------------------

def daemon_host(explicit: str | None = None) -> str:
    return (explicit or os.environ.get("MINIDOCKER_HOST") or os.environ.get("DOCKER_HOST")
            or DEFAULT_HOST)


def _connect(host: str, timeout: float) -> socket.socket:
    if host.startswith("unix://"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(host[len("unix://"):])
        except OSError:
            s.close()
            raise
        return s
    if host.startswith("tcp://"):
        hostname, _, port = host[len("tcp://"):].rstrip("/").rpartition(":")
        return socket.create_connection((hostname, int(port)), timeout=timeout)
    raise ValueError(f"unsupported daemon host {host!r} (want unix:///path or tcp://host:port)")


def _dechunk(body: bytes) -> bytes:
    """Undo ``Transfer-Encoding: chunked``: hex size line, data, CRLF, ..., a zero-size chunk."""
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, body = out + body[:size], body[size + 2:]
    return out


def http_get(host: str, path: str, timeout: float = 0.5) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.0 GET written by hand: the request is three lines of text; the answer is a status
    line, headers, a blank line and the body (the server closes the connection after it)."""
    with _connect(host, timeout) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: minidocker-doctor\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split()
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP answer: {lines[0][:60]!r}")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    return int(parts[1]), headers, body


def daemon_info(host: str | None = None) -> dict:
    """Ping the daemon; if it answers, ask /info for its root directory."""
    host = daemon_host(host)
    out = {"host": host, "running": False, "api_version": None, "root": None,
           "server_version": None, "error": None}
    try:
        status, headers, body = http_get(host, "/_ping")
    except FileNotFoundError:
        out["error"] = f"no socket at {host.removeprefix('unix://')}"
        return out
    except ConnectionRefusedError:
        out["error"] = "the socket exists but nothing listens on it (a daemon that died?)"
        return out
    except (OSError, ValueError) as e:
        out["error"] = f"{type(e).__name__}: {e}"
        return out
    if status != 200:
        out["error"] = f"/_ping answered {status} {body[:80]!r}"
        return out
    out["running"] = True
    out["api_version"] = headers.get("api-version")
    try:
        status, _, body = http_get(host, "/info")
        info = json.loads(body) if status == 200 else {}
    except (OSError, ValueError) as e:
        info = {}
        out["error"] = f"/info: {type(e).__name__}: {e}"
    out["root"] = info.get("DockerRootDir")
    out["server_version"] = info.get("ServerVersion")
    out["containers"] = info.get("Containers")
    out["images"] = info.get("Images")
    out["driver"] = info.get("Driver")
    return out


# --- chapters ----------------------------------------------------------------------------------

def labs_dir() -> Path:
    return Path(os.environ.get("MINIDOCKER_LABS") or Path(__file__).resolve().parents[1] / "labs")


def lab_folders() -> dict[str, str]:
    """{"01": "01-namespaces", ...} for the lab folders present in the repository."""
    try:
        names = os.listdir(labs_dir())
    except OSError:
        return {}
    return {n[:2]: n for n in sorted(names) if n[:2].isdigit() and n[2:3] == "-"}


def _verdict(status: str, why: str) -> dict:
    return {"status": status, "why": why}


def chapter_verdicts(info: dict) -> dict[str, dict]:
    """For each chapter: runnable, limited or not runnable here, and why."""
    caps, cg, ov, ns = info["privileges"], info["cgroups"], info["overlayfs"], info["namespaces"]
    tools, py = info["tools"], info["python"]
    admin = caps["sys_admin"]
    out = {}

    # 00 kernel calls: ctypes into glibc; the recording twin needs nothing at all
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).sethostname  # noqa: B018 — does glibc export it?
        libc = True
    except (OSError, AttributeError):
        libc = False
    if not libc:
        out["00"] = _verdict("limited", "glibc not loadable through ctypes: the Recorder only")
    elif admin:
        out["00"] = _verdict("runnable", "ctypes calls into glibc; CAP_SYS_ADMIN for the real calls")
    else:
        out["00"] = _verdict("limited", "not root: real calls fail with EPERM (which the chapter shows); "
                                        "the Recorder runs everything")

    # 01 namespaces
    missing = [k for k in ("mnt", "uts", "ipc", "pid", "net", "user", "cgroup") if k not in ns["types"]]
    if missing:
        out["01"] = _verdict("limited", f"kernel lacks namespaces: {', '.join(missing)}")
    elif admin:
        out["01"] = _verdict("runnable", f"all {len(ns['types'])} namespace types; CAP_SYS_ADMIN")
    elif info["userns"]["unprivileged"]:
        out["01"] = _verdict("limited", "not root: only through a user namespace (rootless)")
    else:
        out["01"] = _verdict("not runnable", "no CAP_SYS_ADMIN and no unprivileged user namespaces")
    if out["01"]["status"] != "not runnable" and not py["os_unshare"]:
        out["01"]["why"] += f"; Python {py['version']} has no os.unshare: kernel.py calls libc via ctypes"

    # 02 rootfs
    if not admin:
        out["02"] = _verdict("limited", "mount/pivot_root need CAP_SYS_ADMIN: only in a user namespace")
    elif not tools["busybox"]:
        out["02"] = _verdict("limited", f"no {BUSYBOX} to build a root filesystem (apt-get install busybox-static)")
    else:
        out["02"] = _verdict("runnable", f"mount + pivot_root; rootfs from {BUSYBOX}")

    # 03 cgroups
    writable = any(os.access(h["mountpoint"], os.W_OK) for h in cg["v1"] + cg["v2"])
    v2_ctl = {c for h in cg["v2"] for c in h["controllers"]}
    qemu = "v2 limits only in the qemu guest" + ("" if tools["qemu-system-x86_64"]
                                                  else " (install qemu-system-x86)")
    if cg["layout"] == "none":
        out["03"] = _verdict("not runnable", "no cgroup filesystem mounted")
    elif not writable:
        out["03"] = _verdict("limited", f"{cg['layout']}: cgroup files are read-only for us (not root?)")
    elif cg["layout"] == "v2":
        lacking = [c for c in ("memory", "pids", "cpu") if c not in v2_ctl]
        out["03"] = (_verdict("limited", f"v2 without {', '.join(lacking)}") if lacking
                     else _verdict("runnable", "v2 driver with memory, pids, cpu"))
    elif cg["layout"] == "hybrid":
        out["03"] = _verdict("limited", f"hybrid: v1 driver for real; {qemu}")
    else:
        out["03"] = _verdict("limited", f"v1 only: v1 driver for real; {qemu}")

    # 04 union mounts, 05 copy-on-write
    if ov["upper_ok"] and admin:
        out["04"] = _verdict("runnable", f"overlay available (upper on {ov['fstype']})")
        out["05"] = _verdict("runnable", "overlay copy-up and whiteouts, plus the copy driver")
    else:
        if not ov["supported"]:
            why = "no overlay in /proc/filesystems"
        elif ov["problem"]:
            inside = " inside a container" if info["container"]["inside"] else ""
            why = f"{ov['checked']} is on {ov['fstype']}{inside}: {ov['problem']}"
        else:
            why = "mounting overlay needs CAP_SYS_ADMIN"
        out["04"] = _verdict("limited", f"copy driver only ({why})")
        out["05"] = _verdict("limited", "diff/commit with the copy driver only (no overlay whiteouts)")

    # 06 images
    note = "" if py["tarfile_filters"] else f"; Python {py['version']} has no tarfile extraction filters (3.11.4+)"
    out["06"] = (_verdict("runnable", "layers, OCI layout, unpack as root" + note) if caps["root"]
                 else _verdict("limited", "unpacking device nodes and ownership needs root" + note))

    # 07 registry
    ref = "docker-registry present for comparison" if tools["docker-registry"] else "docker-registry not installed (optional)"
    out["07"] = _verdict("runnable", f"client and server in Python on localhost; {ref}")

    # 08 daemon/API
    d = info["daemon"]
    state = f"daemon running at {d['host']}" if d["running"] else "daemon not running (make daemon)"
    client = "docker client present" if tools["docker"] else "no docker client for the compatibility tests"
    out["08"] = (_verdict("runnable", f"{state}; {client}") if caps["root"]
                 else _verdict("limited", f"minidockerd needs root; {state}"))

    # 09 OCI runtime: minidocker-runtime next to runc, on the same bundles
    runc = "runc present for the comparison" if shutil.which("runc") else "runc not installed (make setup): no comparison"
    out["09"] = (_verdict("runnable" if shutil.which("runc") else "limited", f"namespaces, mounts, cgroups as root; {runc}")
                 if caps["root"] else _verdict("not runnable", "creating containers needs root (sudo)"))

    # 10 security: real attacks in namespaces, against a loop-device disk; a static probe (gcc)
    lacking = [what for what, ok in (("gcc (the static probe)", shutil.which("gcc")),
                                     ("pyseccomp + libseccomp2", importlib.util.find_spec("pyseccomp")),
                                     ("losetup", shutil.which("losetup"))) if not ok]
    if not admin:
        out["10"] = _verdict("not runnable", "the attacks and defences need root (namespaces, loop devices, cgroups)")
    elif lacking:
        out["10"] = _verdict("not runnable", f"missing {', '.join(lacking)} (make student installs them)")
    else:
        out["10"] = _verdict("runnable", "capabilities, seccomp, masks, device cgroup, against a loop-device disk")

    # 12 volumes and storage (btrfs on a loop device: the state directory need not be on btrfs)
    kernel_btrfs = "no btrfs in the kernel" not in info.get("storage_drivers", {}).get("btrfs", "")
    if not caps["root"]:
        out["12"] = _verdict("not runnable", "minidockerd, mounts and loop devices need root (sudo)")
    elif not (kernel_btrfs and shutil.which("mkfs.btrfs") and os.path.exists("/dev/loop-control")):
        out["12"] = _verdict("limited", "volumes yes; no btrfs on a loop device here (kernel btrfs, "
                                        "btrfs-progs, /dev/loop-control): overlay and copy drivers only")
    else:
        out["12"] = _verdict("runnable", "volumes, binds, tmpfs; btrfs on a loop device beside overlay and copy")

    # 13 build (a daemon of its own: RUN steps are containers)
    out["13"] = (_verdict("runnable", "POST /build on a daemon of the notebook's own; "
                          + ("docker client present" if tools["docker"] else "no docker client (optional)"))
                 if caps["root"] else _verdict("not runnable", "RUN steps are containers: run as root"))
    # 11 networking
    nft_tool = shutil.which("nft")
    net_ok = os.path.exists("/proc/sys/net/ipv4/ip_forward") and nft_tool
    out["11"] = (_verdict("runnable", "veth, bridge and nftables (nft JSON) available; pyroute2 for netlink")
                 if caps["root"] and net_ok else
                 _verdict("limited", "needs root and the 'nft' command (nftables)" if not nft_tool
                          else "needs root (namespaces, links, nftables)"))

    labs = lab_folders()
    for number, v in out.items():
        v["topic"] = CHAPTERS[number]
        v["lab"] = f"labs/{labs[number]}" if number in labs else None
    return out


# --- for notebooks: the opening cell of every chapter (docs/COURSE.md) ------------------------------

class HostCannot(RuntimeError):
    """This host cannot run a chapter, or one of its cells: the message says why and what to do."""


class ChapterVerdict(NamedTuple):
    number: str
    status: str          # "runnable", "limited", "not runnable" or "unknown"
    why: str
    info: dict           # everything collect() found

    def __str__(self) -> str:
        name = " ".join(filter(None, ["chapter", self.number, CHAPTERS.get(self.number)]))
        return f"{name}: {self.status} — {self.why}"


def _ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def chapter(number: str | int, daemon_host: str | None = None) -> ChapterVerdict:
    """What a notebook's first code cell calls: clean up what earlier runs of the chapter left behind
    and arrange for this run's clean-up at exit (:mod:`minidocker.nbrun`), then print this host's
    verdict for chapter ``number`` and return it. "not runnable" raises HostCannot (the notebook stops at its first cell, saying why);
    "limited" means some cells will call ``skip``."""
    number = f"{int(number):02d}"
    from . import nbrun   # this run's directory, the sweep of dead runs, the clean-up at exit
    if swept := nbrun.start(number):
        print(f"chapter {number}: removed what earlier runs left (their kernels are gone): {nbrun.summary(swept)}")
    info = collect(daemon_host=daemon_host)
    v = info["chapters"].get(number)
    verdict = (ChapterVerdict(number, v["status"], v["why"], info) if v else
               ChapterVerdict(number, "unknown", "doctor has no verdict for this chapter yet", info))
    print(verdict)
    if verdict.status == "not runnable":
        raise HostCannot(f"{verdict}. See `minidocker doctor` and README.md, 'Start here' "
                         "(a Debian 12 VM, as root).")
    return verdict


def skip(why: str) -> None:
    """A cell that this host cannot run: print why (for a student) — or, under CI=true, fail, because
    CI must run everything. Use as the first statement of the cell's ``else`` branch."""
    if _ci():
        raise HostCannot(f"CI=true and this cell would be skipped: {why}")
    print(f"skipped on this host: {why}")


# --- collect and report ------------------------------------------------------------------------

def collect(daemon_host: str | None = None, root: str | None = None) -> dict:
    """Everything the report shows, as a JSON-serialisable dict. Reads /proc and /sys only, plus one
    connection to the daemon's socket."""
    mounts = parse_mountinfo(read_text("/proc/self/mountinfo", ""))
    proc_cgroups = parse_proc_cgroups(read_text("/proc/cgroups", ""))
    info = {
        "kernel": kernel_info(),
        "cgroups": cgroup_info(mounts, proc_cgroups),
        "overlayfs": overlay_info(read_text("/proc/filesystems", ""), mounts,
                                  root or os.environ.get("MINIDOCKER_ROOT") or DEFAULT_ROOT),
        "userns": userns_info(),
        "namespaces": namespace_info(),
        "container": container_info(mounts),
        "python": python_info(),
        "privileges": capability_info(),
        "tools": tool_info(),
        "daemon": daemon_info(daemon_host),
    }
    info["storage_drivers"] = storage_driver_info(read_text("/proc/filesystems", ""), info["overlayfs"])
    info["chapters"] = chapter_verdicts(info)
    return info


def _yes(b: bool) -> str:
    return "yes" if b else "no"


def _section(title: str, rows: list[tuple[str, str]], width: int = 22) -> str:
    lines = [title]
    for key, value in rows:
        lines.append(f"  {key:<{width}} {value}")
    return "\n".join(lines)


def describe_daemon(d: dict) -> str:
    if not d["running"]:
        return "not running"
    parts = [f"API {d['api_version'] or '?'}"]
    if d.get("root"):
        parts.append(f"root {d['root']}")
    if d.get("driver"):
        parts.append(f"storage driver {d['driver']}")
    return f"running ({', '.join(parts)})"


def report(info: dict) -> str:
    """A readable, aligned text report of ``collect()``'s dict."""
    k, cg, ov, un = info["kernel"], info["cgroups"], info["overlayfs"], info["userns"]
    ns, ct, py, pr = info["namespaces"], info["container"], info["python"], info["privileges"]
    sections = [_section("kernel", [("release", k["release"]), ("machine", k["machine"])])]

    rows = [("layout", cg["layout"])]
    for h in cg["v1"]:
        what = ",".join(h["controllers"]) or (f"name={h['name']} (no controllers)" if h["name"] else "-")
        rows.append((f"v1 {h['mountpoint']}", what))
    for h in cg["v2"]:
        rows.append((f"v2 {h['mountpoint']}", ",".join(h["controllers"]) or "(no controllers)"))
    if cg["not_in_v1"] and cg["v1"]:
        rows.append(("not bound to v1", ",".join(cg["not_in_v1"])))
    sections.append(_section("cgroups", rows, width=30))

    upper = "yes" if ov["upper_ok"] else f"no ({ov['problem'] or 'no overlay'})"
    sections.append(_section("overlayfs", [
        ("in kernel", _yes(ov["supported"])),
        ("state dir", f"{ov['root']} (checked {ov['checked']}: {ov['fstype']})"),
        ("can be overlay upper", upper),
        ("storage driver", "overlay (minidockerd's default)" if ov["upper_ok"]
         else "copy (minidockerd falls back to it: --storage-driver copy)")]))

    sections.append(_section("storage drivers", [
        (name, "usable" if not why else f"no ({why})") for name, why in info["storage_drivers"].items()]))

    clone = un["unprivileged_userns_clone"]
    sections.append(_section("user namespaces", [
        ("max_user_namespaces", str(un["max_user_namespaces"])),
        ("unprivileged_userns_clone", "absent (upstream kernel)" if clone is None else str(clone)),
        ("available", _yes(un["available"]))], width=26))

    sections.append(_section("namespaces", [(t, i) for t, i in ns["ids"].items()]))

    rows = [("inside a container", "likely" if ct["inside"] else "no sign of it")]
    rows += [("sign", s) for s in ct["signals"]] + [("note", n) for n in ct["notes"]]
    rows.append(("root filesystem", ct["root_fstype"]))
    sections.append(_section("container", rows))

    sections.append(_section("python", [
        ("version", f"{py['version']} ({py['executable']})"),
        ("os.unshare / os.setns", f"{_yes(py['os_unshare'])} / {_yes(py['os_setns'])}"),
        ("tarfile filters", _yes(py["tarfile_filters"]))]))

    missing = ", ".join(pr["missing"]) or "none"
    sections.append(_section("privileges", [
        ("root", f"{_yes(pr['root'])} (euid {pr['euid']})"),
        ("CapEff", pr["cap_eff"]),
        ("capabilities missing", missing if len(missing) < 60 else f"{len(pr['missing'])} of them")]))

    sections.append(_section("tools", [(n, p or "not installed") for n, p in info["tools"].items()]))

    d = info["daemon"]
    rows = [("host", d["host"]), ("state", describe_daemon(d))]
    if not d["running"] and d["error"]:
        rows.append(("why", d["error"]))
    sections.append(_section("daemon", rows))

    rows = []
    for number, v in info["chapters"].items():
        lab = f" [{v['lab']}]" if v.get("lab") else ""
        rows.append((f"{number} {v['topic']}", f"{v['status']:<12} {v['why']}{lab}"))
    sections.append(_section("chapters and labs here", rows))
    return "\n\n".join(sections) + "\n"


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="minidocker doctor", description="What this host supports.")
    p.add_argument("--json", action="store_true", help="print the collected facts as JSON")
    p.add_argument("--host", help=f"daemon address (default: $MINIDOCKER_HOST, $DOCKER_HOST, {DEFAULT_HOST})")
    p.add_argument("--root", help=f"state directory to check for overlay (default {DEFAULT_ROOT})")
    args = p.parse_args(argv)
    info = collect(daemon_host=args.host, root=args.root)
    print(json.dumps(info, indent=2) if args.json else report(info), end="" if not args.json else "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

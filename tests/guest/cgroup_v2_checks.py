"""Runs *inside* the qemu guest (pure cgroup v2): the same limit checks as on the v1 host, through
the same code the container monitor uses (``runtime.resources``). Prints one JSON line.

Each workload is a busybox shell that waits on its stdin before it execs the real command — like a
container's pid 1 waiting before exec — so it is in its cgroup before the workload runs.
"""
import json
import os
import subprocess
import sys
import time
import traceback

sys.path.insert(0, sys.argv[1])

from minidocker import cgroups  # noqa: E402
from minidocker.cgroups.cpu import shares_to_weight  # noqa: E402
from minidocker.cgroups.driver import read, read_keyed  # noqa: E402
from minidocker.runtime import resources  # noqa: E402
from minidocker.daemon.config import ContainerConfig  # noqa: E402

PARENT = "minidocker-v2test"
results = {}


def cfg(name, host, devices=None):
    """The daemon's record (for the verbs) and the OCI spec the runtime reads (for setup)."""
    lim, warnings = cgroups.parse_host_config(host)
    c = ContainerConfig(id=name, name=name, image_id="", image_ref="", argv=[], env=[],
                        resources=lim.to_dict(), cgroup_parent=PARENT)
    c.spec = {"linux": {"cgroupsPath": f"{PARENT}/{name}",
                        "resources": {**lim.to_oci(), **({"devices": devices} if devices else {})}}}
    return c, warnings


def start(c, script, stdout=subprocess.DEVNULL):
    p = subprocess.Popen(["/bin/busybox", "sh", "-c", f"read go; exec /bin/busybox sh -c '{script}'"],
                         stdin=subprocess.PIPE, stdout=stdout, stderr=subprocess.STDOUT)
    resources.setup(c.spec, c.id, p.pid)
    resources.set_devices(c.spec, c.id)
    p.stdin.write(b"go\n")
    p.stdin.close()
    return p


def cgdir(c):
    return os.path.join("/sys/fs/cgroup", PARENT, c.id)


def check(name):
    def deco(fn):
        try:
            results[name] = {"ok": True, **fn()}
        except Exception as e:
            results[name] = {"ok": False, "error": f"{e}", "trace": traceback.format_exc()[-1500:]}
        return fn
    return deco


@check("layout")
def _():
    layout = cgroups.detect()
    return {"mode": layout.mode, "controllers": sorted(layout.controllers()),
            "support": cgroups.limits.host_support(layout)}


@check("oom")
def _():
    c, warnings = cfg("oom", {"Memory": 32 << 20})
    p = start(c, "x=a; while true; do x=$x$x; done")
    code = p.wait(60)
    d = cgdir(c)
    peak, events, limit = read(d, "memory.peak"), read_keyed(d, "memory.events"), read(d, "memory.max")
    oom = resources.finish(c)
    return {"returncode": code, "oom_killed": oom, "memory.max": limit, "memory.peak": int(peak or 0),
            "memory.events": events, "warnings": warnings, "removed": not os.path.exists(d)}


@check("pids")
def _():
    c, warnings = cfg("pids", {"PidsLimit": 20})
    p = start(c, "f(){ f|f & }; f; sleep 4")
    time.sleep(3)
    d = cgdir(c)
    out = {"pids.max": read(d, "pids.max"), "pids.current": int(read(d, "pids.current")),
           "pids.events": read_keyed(d, "pids.events"), "warnings": warnings}
    resources.kill_tree(c)
    p.wait(30)
    resources.finish(c)
    out["removed"] = not os.path.exists(d)
    return out


@check("cpu")
def _():
    c, warnings = cfg("cpu", {"NanoCpus": 200_000_000, "CpuShares": 512})
    p = start(c, "while :; do :; done")
    d = cgdir(c)
    u0, t0 = read_keyed(d, "cpu.stat").get("usage_usec", 0), time.monotonic()
    time.sleep(3)
    st, t1 = read_keyed(d, "cpu.stat"), time.monotonic()
    out = {"cpu.max": read(d, "cpu.max"), "cpu.weight": int(read(d, "cpu.weight")),
           "expected_weight": shares_to_weight(512), "nr_throttled": st.get("nr_throttled", 0),
           "share_of_a_core": (st.get("usage_usec", 0) - u0) / 1e6 / (t1 - t0), "warnings": warnings}
    resources.kill_tree(c)
    p.wait(30)
    resources.finish(c)
    return out


@check("freeze")
def _():
    c, warnings = cfg("freeze", {"Memory": 64 << 20})
    p = start(c, "while :; do sleep 0.1; done")
    d = cgdir(c)
    resources.pause(c)
    frozen = read_keyed(d, "cgroup.events").get("frozen")
    stats = resources.stats(c, True)
    resources.unpause(c)
    thawed = read_keyed(d, "cgroup.events").get("frozen")
    resources.kill_tree(c)  # cgroup.kill: the whole tree
    code = p.wait(30)
    resources.finish(c)
    return {"frozen": frozen, "thawed": thawed, "killed_returncode": code,
            "stats_memory_limit": stats["memory_stats"].get("limit"),
            "stats_pids": stats["pids_stats"].get("current"), "removed": not os.path.exists(d)}


@check("devices")
def _():
    """The device cgroup on v2: an eBPF program (security chapter) from the rules: deny all, allow
    /dev/null. Reading /dev/zero is refused, /dev/null works."""
    rules = [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]
    c, _ = cfg("devices", {}, rules)
    p = start(c, "head -c1 /dev/null && echo null-ok; head -c1 /dev/zero >/dev/null 2>&1 || echo zero-denied",
              stdout=subprocess.PIPE)
    out = p.stdout.read().decode()
    p.wait(30)
    resources.finish(c)
    return {"output": out.split()}


@check("daemon")
def _():
    """End to end: a minidockerd in the guest and the monitor — the same path as on the host, driven
    through the API from this process (every Python start costs seconds under emulation)."""
    from minidocker.cli.client import Client
    from minidocker.runtime.launcher import python_argv
    host = "unix:///tmp/md/d.sock"
    env = dict(os.environ, MINIDOCKER_HOST=host)  # PYTHONPATH: the checkout and the venv (vm.guest_env)
    os.makedirs("/tmp/md", exist_ok=True)
    log = open("/tmp/md/daemon.log", "wb")
    parent = PARENT + "-daemon"
    d = subprocess.Popen(python_argv("from minidocker.daemon.main import main; sys.exit(main())",
                                     "--root", "/tmp/md/root", "-H", host, "--cgroup-parent", parent),
                         env=env, stdout=log, stderr=log)
    api = Client(host)
    out, t0 = {}, time.monotonic()

    def run(name, cmd, host_config):
        # No network: the guest's kernel has no modules loaded (no veth), and this check is about cgroups.
        host_config = {"NetworkMode": "none", **host_config}
        r = api.request("POST", "/containers/create", query={"name": name},
                        body={"Image": "busybox", "Cmd": cmd, "HostConfig": host_config}).check().json()
        api.request("POST", f"/containers/{r['Id']}/start").check()
        return r

    def inspect(name):
        return api.request("GET", f"/containers/{name}/json").check().json()

    try:
        while True:
            try:
                api.request("GET", "/_ping").check()
                break
            except Exception:
                if time.monotonic() - t0 > 120 or d.poll() is not None:
                    raise RuntimeError("the daemon did not start: " + open("/tmp/md/daemon.log").read()[-1500:])
                time.sleep(0.2)
        out["t_daemon"] = round(time.monotonic() - t0, 1)
        bomb = "x=a; while true; do x=$x$x; done"
        run("oom", ["sh", "-c", bomb], {"Memory": 32 << 20})
        api.request("POST", "/containers/oom/wait").check()
        st = inspect("oom")["State"]
        out["inspect_oom"] = [st["OOMKilled"], st["ExitCode"]]
        cid = run("fb", ["sh", "-c", "f(){ f|f & }; f; sleep 60"], {"PidsLimit": 20})["Id"]
        time.sleep(3)
        cgd = os.path.join("/sys/fs/cgroup", parent, cid)
        out["fb_pids_max"], out["fb_refused"] = read(cgd, "pids.max"), read_keyed(cgd, "pids.events").get("max", 0)
        api.request("POST", "/containers/fb/pause").check()
        out["fb_frozen"] = read_keyed(cgd, "cgroup.events").get("frozen")
        out["fb_status"] = inspect("fb")["State"]["Status"]
        s = api.request("GET", "/containers/fb/stats", query={"stream": 0, "one-shot": 1}).check().json()
        out["fb_stats_pids"] = s["pids_stats"]
        api.request("DELETE", "/containers/fb", query={"force": 1}).check()  # a paused tree: cgroup.kill
        out["fb_removed"] = not os.path.exists(cgd)
        r = api.request("POST", "/containers/create", body={"Image": "busybox", "Cmd": ["true"],
                                                            "HostConfig": {"MemorySwap": -1, "Memory": 64 << 20}})
        out["create_ok"] = r.status
        api.request("DELETE", f"/containers/{r.json()['Id']}", query={"force": 1})
        api.request("DELETE", "/containers/oom", query={"force": 1})
        pdir = os.path.join("/sys/fs/cgroup", parent)
        out["left"] = [x for x in os.listdir(pdir) if os.path.isdir(os.path.join(pdir, x))] if os.path.isdir(pdir) else []
        out["t_total"] = round(time.monotonic() - t0, 1)
    finally:
        d.terminate()
        d.wait(30)
        pdir = os.path.join("/sys/fs/cgroup", parent)
        if os.path.isdir(pdir) and not [x for x in os.listdir(pdir) if os.path.isdir(os.path.join(pdir, x))]:
            os.rmdir(pdir)
    return out


@check("security")
def _():
    """Chapter 10 on pure v2: Docker's device rules as an eBPF program (open of a node outside the
    rules EPERM, /dev/null fine, mknod allowed), and a read-only cgroupfs refusing a pids.max write."""
    import errno
    import stat
    from minidocker.kernel import CLONE_NEWNS, MS_PRIVATE, MS_RDONLY, MS_REC, Linux
    from minidocker.security import devices
    with open("/sys/fs/cgroup/cgroup.subtree_control", "w") as f:
        f.write("+pids")
    d = "/sys/fs/cgroup/minidocker-v2test-sec"
    os.makedirs(d, exist_ok=True)
    kmsg = "/tmp/sec-kmsg"            # char 1:11, not in Docker's rules
    os.mknod(kmsg, stat.S_IFCHR | 0o600, os.makedev(1, 11))

    def in_child(fn):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.write(w, json.dumps(fn()).encode())
            finally:
                os._exit(0)
        os.close(w)
        data = os.read(r, 65536)
        os.waitpid(pid, 0)
        return json.loads(data)

    def attempt(fn):
        try:
            fn()
            return "OK"
        except OSError as e:
            return errno.errorcode[e.errno]

    def probe(join):
        if join:
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write("0")
        node = f"/tmp/sec-blk-{os.getpid()}"
        out = {"null": attempt(lambda: os.close(os.open("/dev/null", os.O_RDWR))),
               "kmsg": attempt(lambda: os.close(os.open(kmsg, os.O_RDONLY))),
               "mknod": attempt(lambda: os.mknod(node, stat.S_IFBLK | 0o600, os.makedev(7, 0)))}
        if os.path.exists(node):
            os.unlink(node)
        return out

    def cgroupfs(flags):
        k = Linux()
        k.unshare(CLONE_NEWNS)
        k.mount(None, "/", None, MS_REC | MS_PRIVATE, None)
        os.makedirs("/tmp/sec-cg", exist_ok=True)
        k.mount("cgroup2", "/tmp/sec-cg", "cgroup2", flags, None)
        return attempt(lambda: os.close(os.open("/tmp/sec-cg/minidocker-v2test-sec/pids.max", os.O_WRONLY)))

    try:
        prog_id = devices.attach_v2(Linux(), d, devices.DEFAULT_RULES)
        confined, free = in_child(lambda: probe(True)), in_child(lambda: probe(False))
        devices.detach_v2(Linux(), d)
        detached = in_child(lambda: probe(True))
        ro, rw = in_child(lambda: cgroupfs(MS_RDONLY)), in_child(lambda: cgroupfs(0))
    finally:
        os.unlink(kmsg)
        os.rmdir(d)
    return {"prog_id": prog_id, "confined": confined, "free": free, "detached": detached,
            "ro_pids_max": ro, "rw_pids_max": rw}


@check("cleanup")
def _():
    parent = os.path.join("/sys/fs/cgroup", PARENT)
    left = [x for x in os.listdir(parent) if os.path.isdir(os.path.join(parent, x))] if os.path.isdir(parent) else []
    if os.path.isdir(parent) and not left:
        os.rmdir(parent)
    return {"left": left}


print("MINIDOCKER-V2-RESULTS " + json.dumps(results), flush=True)

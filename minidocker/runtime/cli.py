"""``minidocker-runtime``: runc's command line over minidocker's runtime, so podman and conmon can use it.

What this teaches
-----------------
An OCI runtime is a *command* with a contract (the OCI runtime spec's runtime.md, and runc's
flags, which every caller has come to rely on): ``create`` prepares a container from a bundle
(``config.json`` + a root filesystem) and leaves its init blocked before exec; ``start`` lets it exec;
``state`` prints a JSON record; ``kill`` signals; ``delete`` removes what is left. The runtime keeps no
process of its own: the caller's monitor (conmon) is the container's parent. podman runs, for
``podman run --rm busybox echo hi``::

    conmon ... -r minidocker-runtime -b BUNDLE -p PIDFILE ...
      -> minidocker-runtime --root R --log L --log-format json create --bundle B --pid-file P ID
    minidocker-runtime --root R start ID          (conmon already waits for the init: its subreaper)
    minidocker-runtime --root R state ID          (as often as podman wants to know)
    minidocker-runtime --root R delete --force ID

The verbs themselves are in ``adapter.py``; this module parses runc's flags, validates
``config.json`` against the runtime spec's JSON schema (``specschema.py``: compiled once), prints runc's
outputs and exits with runc's codes: 0, 1 for any error (the message on stderr and in ``--log``),
and for ``run``/``exec`` in the foreground the process's own exit code (128+N when killed by
signal N).

Specs and man pages: runtime-spec runtime.md, config.md, config-linux.md; runc(8), runc-create(8),
runc-exec(8), runc-spec(8), runc-update(8); conmon's src/oci.c for what is passed.
"""
from __future__ import annotations

import json
import os
import sys

from ..timing import mark
from .adapter import DEFAULT_ROOT, Runtime, RuntimeFailure, signal_number
from .spec import example as default_spec  # what `runc spec` writes

VERSION = "0.1.0"
SPEC_VERSION = "1.0.2-dev"  # the runtime-spec version of the schemas we check against


class Log:
    """runc's ``--log`` / ``--log-format``: errors go to stderr *and* the log, which conmon reads
    (json: one ``{"level","msg","time"}`` object a line) to tell podman why a start failed."""

    def __init__(self, path: str | None, fmt: str):
        self.path, self.fmt = path, fmt

    def write(self, level: str, msg: str) -> None:
        if not self.path:
            return
        from ..util import now_rfc3339
        t = now_rfc3339()
        if self.fmt == "json":
            line = json.dumps({"level": level, "msg": msg, "time": t})
        else:
            line = f"time={json.dumps(t)} level={level} msg={json.dumps(msg)}"
        try:
            with open(self.path, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass


def load_bundle(bundle: str | None, root: str) -> tuple[str, dict]:
    """Read ``config.json`` (spec.load: the fields the runtime needs) and check it against the
    runtime spec's schema (the compiled validator is cached under ``ROOT/.schema``)."""
    from . import spec as S
    from .specschema import InvalidConfig, validate
    bundle = os.path.abspath(bundle or os.getcwd())
    try:
        config = S.load(bundle)
        validate(config, os.path.join(root, ".schema"))
    except (InvalidConfig, S.SpecError) as e:
        raise RuntimeFailure(str(e)) from None
    if not os.path.isdir(S.root_path(config, bundle)):
        raise RuntimeFailure(f"rootfs ({config['root']['path']}) does not exist in {bundle}")
    return bundle, config


# ---- flags ----------------------------------------------------------------------------------------

COMMANDS = ("create", "run", "start", "state", "kill", "delete", "exec", "pause", "resume", "update",
            "spec", "list", "ps")
_GLOBAL_WITH_VALUE = ("--root", "--log", "--log-format", "--rootless")


def command_of(argv: list[str]) -> str | None:
    """The subcommand in ``argv`` (after the global flags), if it is one of ours."""
    i = 0
    while i < len(argv):
        if argv[i] in _GLOBAL_WITH_VALUE:
            i += 2
        elif argv[i].startswith("-"):
            i += 1
        else:
            return argv[i] if argv[i] in COMMANDS else None
    return None


# The verbs conmon and podman run for every container, parsed by hand (:func:`quick_parse`);
# every other command line, and any the quick parser is not sure of, goes to argparse.
# flag -> (dest, takes a value, the verbs that have it); "" = a global flag, before the verb.
_QUICK_VERBS = ("create", "run", "start", "state", "delete", "kill")
_QUICK_FLAGS = {
    "--root": ("root", True, ""), "--log": ("log", True, ""), "--log-format": ("log_format", True, ""),
    "--systemd-cgroup": ("systemd_cgroup", False, ""), "--rootless": ("global_rootless", True, ""),
    "--debug": ("debug", False, ""),
    "-b": ("bundle", True, "create run"), "--bundle": ("bundle", True, "create run"),
    "--console-socket": ("console_socket", True, "create run"), "--pid-file": ("pid_file", True, "create run"),
    "--no-pivot": ("no_pivot", False, "create run"), "--no-new-keyring": ("no_new_keyring", False, "create run"),
    "--preserve-fds": ("preserve_fds", True, "create run"), "--explain": ("explain", False, "create run"),
    "-d": ("detach", False, "run"), "--detach": ("detach", False, "run"), "--keep": ("keep", False, "run"),
    "-f": ("force", False, "delete"), "--force": ("force", False, "delete"),
    "-a": ("all", False, "kill"), "--all": ("all", False, "kill"),
}


def quick_parse(argv: list[str]):
    """The namespace argparse would give for a plain command line of one of ``_QUICK_VERBS``, or
    None to let argparse decide (help, errors, abbreviations, ``--flag=value``, other verbs).

    Why by hand: importing argparse (with gettext, shutil, locale) and building even one
    subparser costs ~10 ms of every runtime start, ~1/4 of runc's whole ``run`` here, and conmon
    starts us three or four times per container. argparse stays the reference for everything
    else; tests/test_runtime_cli.py checks that both parse these command lines alike."""
    import types
    a = {"version": False, "root": DEFAULT_ROOT, "log": None, "log_format": "text", "systemd_cgroup": False,
         "global_rootless": "auto", "debug": False, "command": None}
    args = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok.startswith("-"):
            spec = _QUICK_FLAGS.get(tok)
            where = a["command"] or ""
            if spec is None or (spec[2] != "" if not where else where not in spec[2].split()):
                return None
            dest, takes, _ = spec
            if takes:
                if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                    return None
                a[dest] = argv[i + 1]
                i += 2
                continue
            a[dest] = True
        elif a["command"] is None:
            if tok not in _QUICK_VERBS:
                return None
            a["command"] = tok
            if tok in ("create", "run"):
                a.update(bundle=None, console_socket=None, pid_file=None, no_pivot=False, no_new_keyring=False,
                         preserve_fds=0, explain=False)
                if tok == "run":
                    a.update(detach=False, keep=False)
            elif tok == "delete":
                a["force"] = False
            elif tok == "kill":
                a["all"] = False
        else:
            args.append(tok)
        i += 1
    if a["log_format"] not in ("text", "json") or a["command"] is None:
        return None
    if "preserve_fds" in a:
        try:
            a["preserve_fds"] = int(a["preserve_fds"])
        except ValueError:
            return None
    if len(args) == 1 or (a["command"] == "kill" and len(args) == 2):
        a["id"] = args[0]
        if a["command"] == "kill":
            a["signal"] = args[1] if len(args) == 2 else "SIGTERM"
        return types.SimpleNamespace(**a)
    return None


def _parser(only: str | None = None):
    """runc's flags. ``only``: build just that subcommand's parser — conmon runs us several times
    per container, and building all thirteen costs more than a container's mounts."""
    import argparse
    p = argparse.ArgumentParser(prog="minidocker-runtime", description="An OCI runtime with runc's command line.")
    p.add_argument("-v", "--version", action="store_true", help="print the version")
    p.add_argument("--root", default=DEFAULT_ROOT, help="state directory (default %(default)s)")
    p.add_argument("--log", help="log file (errors are written there as well as to stderr)")
    p.add_argument("--log-format", default="text", choices=("text", "json"))
    p.add_argument("--systemd-cgroup", action="store_true", help="refused: cgroupfs only")
    p.add_argument("--rootless", dest="global_rootless", metavar="true|false|auto", default="auto",
                   help="only false or auto: rootless containers are not supported")
    p.add_argument("--debug", action="store_true", help="log at debug level (accepted; nothing more is logged)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def creating(sp, detach: bool):
        sp.add_argument("-b", "--bundle", help="the bundle directory (default: the current one)")
        sp.add_argument("--console-socket", help="UNIX socket that receives the pty master (SCM_RIGHTS)")
        sp.add_argument("--pid-file", help="write the init's host pid here")
        sp.add_argument("--no-pivot", action="store_true", help="refused: pivot_root is always used")
        sp.add_argument("--no-new-keyring", action="store_true",
                        help="do not give the container a session keyring of its own")
        sp.add_argument("--preserve-fds", type=int, default=0, help="pass fds 3..3+N-1 to the process")
        sp.add_argument("--explain", action="store_true",
                        help="print the kernel calls create would make (runtime/init.py on the recorder); run nothing")
        if detach:
            sp.add_argument("-d", "--detach", action="store_true", help="do not wait for the container")
            sp.add_argument("--keep", action="store_true", help="do not delete the container after it exits")
        sp.add_argument("id")

    def want(name: str) -> bool:
        return only is None or only == name

    if want("create"):
        creating(sub.add_parser("create", help="create a container (its init waits for start)"), False)
    if want("run"):
        creating(sub.add_parser("run", help="create and start a container"), True)
    for name in ("start", "state", "pause", "resume"):
        if want(name):
            sub.add_parser(name).add_argument("id")
    if want("kill"):
        _kill_parser(sub)
    if want("delete"):
        d = sub.add_parser("delete", help="delete a stopped container (or any, with --force)")
        d.add_argument("-f", "--force", action="store_true")
        d.add_argument("id")
    if want("exec"):
        _exec_parser(sub)
    if want("update"):
        u = sub.add_parser("update", help="change a running container's resources")
        u.add_argument("-r", "--resources", help="linux.resources JSON file ('-' for stdin)")
        for flag in ("memory", "memory-swap", "cpu-shares", "cpu-period", "cpu-quota", "cpuset-cpus",
                     "pids-limit", "blkio-weight"):
            u.add_argument("--" + flag)
        u.add_argument("id")
    if want("spec"):
        s = sub.add_parser("spec", help="write runc's default config.json")
        s.add_argument("-b", "--bundle")
        s.add_argument("--rootless", action="store_true")
    if want("list"):
        ls = sub.add_parser("list", help="list containers")
        ls.add_argument("-f", "--format", default="table", choices=("table", "json"))
        ls.add_argument("-q", "--quiet", action="store_true")
    if want("ps"):
        ps = sub.add_parser("ps", help="processes of a container")
        ps.add_argument("-f", "--format", default="table", choices=("table", "json"))
        ps.add_argument("id")
        ps.add_argument("ps_args", nargs=argparse.REMAINDER)
    return p


def _kill_parser(sub) -> None:
    k = sub.add_parser("kill", help="send a signal to the container's init")
    k.add_argument("-a", "--all", action="store_true", help="signal every process in its cgroup")
    k.add_argument("id")
    k.add_argument("signal", nargs="?", default="SIGTERM")


def _exec_parser(sub) -> None:
    import argparse
    e = sub.add_parser("exec", help="run a process in a running container")
    e.add_argument("--console-socket")
    e.add_argument("--cwd")
    e.add_argument("-e", "--env", action="append", default=[])
    e.add_argument("-t", "--tty", action="store_true")
    e.add_argument("-u", "--user", help="UID[:GID]")
    e.add_argument("-g", "--additional-gids", action="append", default=[])
    e.add_argument("-p", "--process", help="a process.json (config.md 'process')")
    e.add_argument("-d", "--detach", action="store_true")
    e.add_argument("--pid-file")
    e.add_argument("--no-new-privs", action="store_true")
    e.add_argument("-c", "--cap", action="append", default=[])
    e.add_argument("--preserve-fds", type=int, default=0)
    e.add_argument("id")
    e.add_argument("argv", nargs=argparse.REMAINDER, metavar="COMMAND")


def _size(text: str) -> int:
    """runc update's sizes: bytes, or with k/m/g (powers of 1024); -1 = unlimited."""
    t = text.strip().lower()
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(t[-1:], 1)
    try:
        return int(float(t[:-1] if mult > 1 else t) * mult)
    except ValueError:
        raise RuntimeFailure(f"invalid value for a size: {text!r}") from None


def _update_resources(a) -> dict:
    if a.resources:
        text = sys.stdin.read() if a.resources == "-" else open(a.resources).read()
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise RuntimeFailure(f"--resources: invalid JSON: {e}") from None
    res: dict = {}
    if a.memory is not None:
        res.setdefault("memory", {})["limit"] = _size(a.memory)
    if a.memory_swap is not None:
        res.setdefault("memory", {})["swap"] = _size(a.memory_swap)
    for flag, key in (("cpu_shares", "shares"), ("cpu_period", "period"), ("cpu_quota", "quota")):
        if getattr(a, flag) is not None:
            res.setdefault("cpu", {})[key] = int(getattr(a, flag))
    if a.cpuset_cpus is not None:
        res.setdefault("cpu", {})["cpus"] = a.cpuset_cpus
    if a.pids_limit is not None:
        res["pids"] = {"limit": int(a.pids_limit)}
    if a.blkio_weight is not None:
        res["blockIO"] = {"weight": int(a.blkio_weight)}
    if not res:
        raise RuntimeFailure("update: nothing to change (give --resources or a resource flag)")
    return res


def _exec_process(a) -> dict:
    if a.process:
        try:
            with open(a.process) as f:
                process = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise RuntimeFailure(f"--process {a.process}: {e}") from None
        if a.argv:
            raise RuntimeFailure("exec: give either --process or a command, not both")
        return process
    if not a.argv:
        raise RuntimeFailure("exec: a command is required (or --process)")
    base = Runtime(a.root).bundle_process(a.id)
    process = {**base, "args": a.argv, "terminal": a.tty}
    process["env"] = list(base.get("env") or []) + a.env
    if a.cwd:
        process["cwd"] = a.cwd
    if a.user:
        uid, _, gid = a.user.partition(":")
        process["user"] = {"uid": int(uid), "gid": int(gid or 0),
                           "additionalGids": [int(g) for g in a.additional_gids]}
    if a.no_new_privs:
        process["noNewPrivileges"] = True
    if a.cap:
        caps = process.setdefault("capabilities", {})
        for key in ("bounding", "effective", "permitted", "ambient"):
            caps[key] = sorted(set(caps.get(key) or []) | set(a.cap))
    return process


def _proxy_console(conn) -> None:
    """``run``/``exec`` with a terminal and no --console-socket: take the pty master ourselves and
    copy between it and our own stdio until the process exits (runc's tty proxy)."""
    import select
    import socket
    import termios
    import tty
    _, fds, _, _ = socket.recv_fds(conn, 64, 1)
    master = fds[0]
    saved = termios.tcgetattr(0) if os.isatty(0) else None
    if saved:
        tty.setraw(0)
    try:
        while True:
            r, _, _ = select.select([0, master], [], [])
            if master in r:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    return
                if not data:
                    return
                os.write(1, data)
            if 0 in r:
                data = os.read(0, 65536)
                if data:
                    os.write(master, data)
    finally:
        if saved:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)


def _own_console_socket():
    import socket
    import tempfile
    d = tempfile.mkdtemp(prefix="minidocker-runtime-")
    path = os.path.join(d, "console.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(1)
    return s, path, d


def _create_or_run(rt: Runtime, a, run: bool) -> int:
    if a.no_pivot:
        raise RuntimeFailure("--no-pivot is not supported: minidocker-runtime always uses pivot_root "
                             "(a root on a ramfs cannot be pivoted: use a tmpfs)")
    if not a.explain:
        from . import resources
        resources.prepare()   # the cgroup attach lock warms while config.json is read (create uses it)
    bundle, config = load_bundle(a.bundle, rt.root)
    mark("runtime", "config.json read and validated")
    if a.explain:
        from .init import explain
        print(explain(bundle))
        return 0
    proxy = None
    console_socket = a.console_socket
    if run and not a.detach and config["process"].get("terminal") and not console_socket:
        proxy = _own_console_socket()
        console_socket = proxy[1]
    import threading
    t = None
    if proxy:
        # The init connects to the socket during create: accept in a thread (it sends its master
        # before blocking on the exec fifo, while create is still waiting for "ready").
        box = {}
        t = threading.Thread(target=lambda: box.setdefault("s", proxy[0].accept()), daemon=True)
        t.start()
    proc = rt.create(a.id, bundle, pid_file=a.pid_file, console_socket=console_socket,
                     preserve_fds=a.preserve_fds, no_new_keyring=a.no_new_keyring)
    mark("runtime", "create")
    if not run:
        return 0
    try:
        rt.start(a.id)
        mark("runtime", "start")
    except BaseException:
        rt.delete(a.id, force=True)
        raise
    if a.detach:
        return 0
    from .adapter import wait_child
    if proxy:
        import shutil
        t.join()
        conn = box["s"][0]
        _proxy_console(conn)
        shutil.rmtree(proxy[2], ignore_errors=True)
    code = wait_child(proc)
    mark("runtime", "wait")
    if not a.keep:
        rt.delete(a.id, force=True)
        mark("runtime", "delete")
    return code


def _owner(root: str, cid: str) -> str:
    """runc's list shows the user owning the container's state directory."""
    import pwd
    try:
        uid = os.stat(os.path.join(root, cid)).st_uid
        return pwd.getpwuid(uid).pw_name
    except (OSError, KeyError):
        return ""


def _print_list(states: list[dict], a) -> None:
    if a.quiet:
        for s in states:
            print(s["id"])
    elif a.format == "json":
        print(json.dumps(states))
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], _owner(a.root, s["id"]))
                 for s in states]
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        for r in rows:
            print("   ".join(c.ljust(w) for c, w in zip(r, widths)) + "   " + r[5])


def _ps(rt: Runtime, a) -> None:
    pids = rt.pids(a.id)
    if a.format == "json":
        print(json.dumps(pids))
        return
    import subprocess
    out = subprocess.run(["ps"] + (a.ps_args or ["-ef"]), capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    header = lines[0].split()
    if "PID" not in header:
        raise RuntimeFailure("ps: the output has no PID column")
    col = header.index("PID")
    print(lines[0])
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in pids:
            print(line)


def dispatch(a) -> int:
    if a.version:
        print(f"minidocker-runtime version {VERSION}\nspec: {SPEC_VERSION}")
        return 0
    if a.systemd_cgroup:
        raise RuntimeFailure("--systemd-cgroup is not supported: minidocker-runtime manages cgroups "
                             "through cgroupfs (configure the caller's cgroup manager as cgroupfs)")
    if a.global_rootless not in ("auto", "false"):
        raise RuntimeFailure("--rootless is not supported: run minidocker-runtime as root")
    rt = Runtime(a.root)
    cmd = a.command
    if cmd is None:
        _parser().print_help()
        return 0
    if cmd in ("create", "run"):
        return _create_or_run(rt, a, cmd == "run")
    if cmd == "start":
        rt.start(a.id)
    elif cmd == "state":
        print(json.dumps(rt.state(a.id), indent=2))
    elif cmd == "kill":
        rt.kill(a.id, signal_number(a.signal), a.all)
    elif cmd == "delete":
        rt.delete(a.id, a.force)
    elif cmd == "pause":
        rt.pause(a.id)
    elif cmd == "resume":
        rt.resume(a.id)
    elif cmd == "update":
        for what in rt.update(a.id, _update_resources(a)):
            print(f"warning: not enforced on this host: {what}", file=sys.stderr)
    elif cmd == "list":
        _print_list(rt.list(), a)
    elif cmd == "ps":
        _ps(rt, a)
    elif cmd == "spec":
        if a.rootless:
            raise RuntimeFailure("spec --rootless is not supported: minidocker-runtime has no "
                                 "user-namespace (rootless) support yet")
        path = os.path.join(a.bundle or ".", "config.json")
        if os.path.exists(path):
            raise RuntimeFailure("File config.json exists. Remove it first")
        from ..util import atomic_write
        atomic_write(path, json.dumps(default_spec(), indent="\t"))
    elif cmd == "exec":
        process = _exec_process(a)
        proxy = None
        console_socket = a.console_socket
        if process.get("terminal") and not console_socket and not a.detach:
            proxy = _own_console_socket()
            console_socket = proxy[1]
        if proxy:
            import threading
            box = {}
            t = threading.Thread(target=lambda: box.setdefault("s", proxy[0].accept()), daemon=True)
            t.start()
        proc = rt.exec(a.id, process, pid_file=a.pid_file, console_socket=console_socket,
                       preserve_fds=a.preserve_fds)
        if a.detach:
            return 0
        from .adapter import wait_child
        if proxy:
            import shutil
            t.join()
            _proxy_console(box["s"][0])
            shutil.rmtree(proxy[2], ignore_errors=True)
        return wait_child(proc)
    return 0


def main(argv: list[str] | None = None) -> int:
    """The program (bin/minidocker-runtime). It freezes the heap it starts with — the imported
    modules, alive until exit — out of the garbage collector's sight (gc.freeze): neither the
    collections during the run nor the interpreter's teardown at exit walk those objects again.
    That teardown alone cost 10–25 ms a run here (a quarter to half of runc's whole ``run``)."""
    import gc
    gc.freeze()
    argv = sys.argv[1:] if argv is None else argv
    mark("runtime", "interpreter and imports")
    a = quick_parse(argv) or _parser(command_of(argv)).parse_args(argv)
    mark("runtime", "flags")
    log = Log(a.log, a.log_format)
    try:
        return dispatch(a)
    except RuntimeFailure as e:
        msg = str(e)
    except OSError as e:
        msg = str(e)
    log.write("error", msg)
    print(f"minidocker-runtime: {msg}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

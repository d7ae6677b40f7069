"""minidockerd: the daemon's entry point.

Start-up order, and why:
1. take an exclusive lock on ``ROOT/minidockerd.lock`` — two daemons on one root would corrupt each
   other's state;
2. load every container from disk and re-attach to those whose monitor still runs (containers
   outlive the daemon);
3. make sure the offline base image ``busybox:latest`` exists (built from Debian's busybox-static);
4. listen on the API socket (0660, group ``minidocker`` when it exists).
SIGTERM/SIGINT stop the daemon; containers keep running under their monitors.
"""
from __future__ import annotations

import argparse
import asyncio
import fcntl
import logging
import os
import signal
import sys

DEFAULT_ROOT = "/var/lib/minidocker"
DEFAULT_HOST = "unix:///run/minidocker.sock"


def parse_args(argv):
    p = argparse.ArgumentParser(prog="minidockerd", description="the minidocker daemon")
    p.add_argument("--root", "--data-root", default=os.environ.get("MINIDOCKER_ROOT", DEFAULT_ROOT),
                   help=f"state directory (default {DEFAULT_ROOT})")
    p.add_argument("-H", "--host", default=None,
                   help=f"socket to listen on (default {DEFAULT_HOST}, or $MINIDOCKER_HOST)")
    p.add_argument("--group", "-G", default="minidocker", help="group owning the socket (if it exists)")
    p.add_argument("--no-base-image", action="store_true", help="do not build busybox:latest at start")
    p.add_argument("-s", "--storage-driver", choices=("overlay", "copy"),
                   default=os.environ.get("MINIDOCKER_STORAGE_DRIVER", "overlay"),
                   help="overlay (default; falls back to copy where overlay cannot work) or copy")
    p.add_argument("--cgroup-parent", default="minidocker",
                   help="parent cgroup of every container's cgroup (default minidocker)")
    p.add_argument("-D", "--debug", action="store_true")
    return p.parse_args(argv)


def lock_root(root: str) -> int:
    os.makedirs(root, mode=0o711, exist_ok=True)
    fd = os.open(os.path.join(root, "minidockerd.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = os.pread(fd, 32, 0).decode().strip()
        raise SystemExit(f"minidockerd: another daemon (pid {other or '?'}) is using {root}")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def cgroup_version() -> str:
    from ..cgroups import detect
    try:
        return "2" if detect().mode == "v2" else "1"
    except OSError:
        return "1"


async def serve(args) -> None:
    from . import http
    from .api import API
    from .engine import Engine

    from ..runtime import launcher
    launcher.enable()  # monitors are forked from a pre-loaded process: fast container starts
    driver, warning = choose_storage_driver(args.storage_driver, args.root)
    engine = Engine(args.root, driver, cgroup_parent=args.cgroup_parent)
    await engine.load()
    if not args.no_base_image:
        try:
            engine.images.resolve("busybox:latest")
        except Exception:
            from ..images import busybox
            try:
                await asyncio.to_thread(busybox.build_busybox, engine.images)
                logging.info("built busybox:latest from busybox-static")
            except Exception as e:
                logging.warning("no base image: %s", e)
    server = http.Server()
    API(engine, {"id": "minidocker", "warnings": [warning] if warning else [],
                 "cgroup_version": cgroup_version(), "os": os_name()}).register(server)
    host = args.host or os.environ.get("MINIDOCKER_HOST") or DEFAULT_HOST
    if not host.startswith("unix://"):
        raise SystemExit(f"minidockerd: only unix:// sockets are supported without TLS, got {host}")
    path = host[len("unix://"):]
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    await server.serve_unix(path, mode=0o660, group=args.group)
    logging.info("minidockerd listening on %s (root %s)", host, args.root)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    await stop.wait()
    logging.info("minidockerd stopping; containers keep running under their monitors")
    server.close()
    launcher.disable()


def choose_storage_driver(wanted: str, root: str) -> tuple[str, str]:
    """The overlay driver needs a kernel with overlayfs and a state directory that may be an upper
    layer (not itself on overlayfs, e.g. inside a container): probe it for real, else fall back."""
    if wanted != "overlay":
        return wanted, ""
    from ..unionfs import overlay_usable
    ok, why = overlay_usable(os.path.join(root, "snapshots"))
    if not ok:
        warning = f"WARNING: the overlay storage driver cannot work here ({why}): using copy"
        logging.warning(warning)
        return "copy", warning
    return "overlay", ""


def os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s minidockerd %(levelname)s %(message)s")
    if os.geteuid() != 0:
        print("minidockerd: must run as root (it creates namespaces and mounts)", file=sys.stderr)
        return 1
    lock_root(args.root)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

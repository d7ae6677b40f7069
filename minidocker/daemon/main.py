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
    p.add_argument("-H", "--host", action="append", default=None,
                   help=f"socket to listen on, repeatable (default {DEFAULT_HOST}, or $MINIDOCKER_HOST); "
                        "tcp://ADDR:PORT only with --tlsverify")
    p.add_argument("--tlsverify", action="store_true", help="TLS on tcp:// and require a client certificate")
    p.add_argument("--tlscacert", help="CA that signed the clients' certificates")
    p.add_argument("--tlscert", help="the daemon's certificate")
    p.add_argument("--tlskey", help="the daemon's private key")
    p.add_argument("--group", "-G", default="minidocker", help="group owning the socket (if it exists)")
    p.add_argument("--no-base-image", action="store_true", help="do not build busybox:latest at start")
    p.add_argument("-s", "--storage-driver", choices=("overlay", "copy", "btrfs"),
                   default=os.environ.get("MINIDOCKER_STORAGE_DRIVER", "overlay"),
                   help="overlay (default; falls back to copy where overlay cannot work), copy, or btrfs "
                        "(the root must be on btrfs)")
    p.add_argument("--cgroup-parent", default="minidocker",
                   help="parent cgroup of every container's cgroup (default minidocker)")
    p.add_argument("--default-registry", default=os.environ.get("MINIDOCKER_DEFAULT_REGISTRY", ""),
                   help="host[:port] that Docker Hub names (busybox, alice/tool) are pulled from, like a "
                        "registry mirror (default: Docker Hub itself; busybox is always built offline)")
    p.add_argument("-b", "--bridge", default="minidocker0", help="the default network's bridge (chapter 11)")
    p.add_argument("--bip", default="", help="the default bridge's address and prefix, e.g. 172.17.0.1/16 "
                   "(default: the first pool subnet the host does not route)")
    p.add_argument("--nft-table", default="minidocker", help="the nftables table this daemon owns")
    p.add_argument("--dns", action="append", default=[],
                   help="DNS server for containers on the default bridge and upstream of the embedded "
                   "DNS server (default: the host's for the former, none for the latter)")
    p.add_argument("--userns-remap", default="", metavar="default|USER[:GROUP]",
                   help="every container in a user namespace mapped to the user's /etc/subuid, /etc/subgid ranges")
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
    from .. import __version__, http, wire
    from .api import API
    from .engine import Engine

    from ..runtime import launcher
    launcher.enable()  # monitors are forked from a pre-loaded process: fast container starts
    from ..network import links
    links.offload()    # netlink (pyroute2, ~25 MB) in a helper process, not in the daemon
    driver, warning = choose_storage_driver(args.storage_driver, args.root)
    remap = None
    if args.userns_remap:
        from .userns import resolve
        try:
            remap = resolve(args.userns_remap)
        except (ValueError, OSError) as e:
            raise SystemExit(f"minidockerd: --userns-remap {args.userns_remap}: {e}")
    engine = Engine(args.root, driver, cgroup_parent=args.cgroup_parent, network=network_settings(args),
                    userns_remap=remap)
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
    server = http.Server(extra_headers=wire.docker_headers(f"minidocker/{__version__} (linux)"),
                         version_check=wire.version_error, spool_dir=os.path.join(args.root, "tmp"))
    API(engine, {"id": "minidocker", "warnings": [warning] if warning else [],
                 "cgroup_version": cgroup_version(), "os": os_name(),
                 "default_registry": args.default_registry,
                 "security_options": ["name=userns"] if remap else []}).register(server)
    hosts = args.host or [os.environ.get("MINIDOCKER_HOST") or DEFAULT_HOST]
    unix_paths = [h[len("unix://"):] for h in hosts if h.startswith("unix://")]
    tcp_hosts = [h for h in hosts if not h.startswith("unix://")]
    if tcp_hosts and not unix_paths:  # the TLS relay needs a UNIX socket behind it; root-only
        unix_paths.append(os.path.join(args.root, "api.sock"))
    for path in unix_paths:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        await server.serve_unix(path, mode=0o660, group=args.group)
        logging.info("minidockerd listening on unix://%s (root %s)", path, args.root)
    listeners = []
    for host in tcp_hosts:
        from . import tls
        addr, port = tcp_address(host)
        listeners.append(tls.serve_tls(addr, port, tls_context(args), unix_paths[0]))
        logging.info("minidockerd listening on %s with mutual TLS", host)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    await stop.wait()
    logging.info("minidockerd stopping; containers keep running under their monitors")
    for lsock in listeners:
        lsock.close()
    server.close()
    await asyncio.to_thread(engine.net.m.shutdown)  # bridges no running container uses, table, sysctls
    launcher.disable()
    from .. import cgroups  # the cgroup parent too, unless a container still runs under it
    cgroups.remove_parent(engine.cgroup_parent)


def network_settings(args):
    """The per-daemon network names (tests run daemons of their own beside the user's)."""
    import ipaddress
    from ..network import Settings
    subnet = gateway = ""
    if args.bip:
        try:
            iface = ipaddress.ip_interface(args.bip)
        except ValueError:
            raise SystemExit(f"minidockerd: invalid --bip {args.bip!r}: expected an address/prefix like 172.17.0.1/16")
        subnet, gateway = str(iface.network), str(iface.ip)
    if len(args.bridge) > 15:
        raise SystemExit(f"minidockerd: bridge name {args.bridge!r} is longer than 15 characters")
    return Settings(state_dir=os.path.join(args.root, "network"), bridge=args.bridge, table=args.nft_table,
                    default_subnet=subnet, default_gateway=gateway, upstreams=list(args.dns))


def choose_storage_driver(wanted: str, root: str) -> tuple[str, str]:
    """The overlay driver needs a kernel with overlayfs and a state directory that may be an upper
    layer (not itself on overlayfs, e.g. inside a container): probe it for real, else fall back."""
    if wanted == "btrfs":
        from ..unionfs import btrfs_usable
        ok, why = btrfs_usable(os.path.join(root, "snapshots"))
        if not ok:   # asked for explicitly: refuse rather than quietly use another driver
            raise SystemExit(f"minidockerd: the btrfs storage driver cannot work here: {why}")
    if wanted != "overlay":
        return wanted, ""
    from ..unionfs import overlay_usable
    ok, why = overlay_usable(os.path.join(root, "snapshots"))
    if not ok:
        warning = f"WARNING: the overlay storage driver cannot work here ({why}): using copy"
        logging.warning(warning)
        return "copy", warning
    return "overlay", ""


def tcp_address(host: str) -> tuple[str, int]:
    if not host.startswith("tcp://"):
        raise SystemExit(f"minidockerd: unsupported address {host} (unix:///PATH or tcp://HOST:PORT)")
    h, _, p = host[len("tcp://"):].rstrip("/").rpartition(":")
    if not p.isdigit():
        raise SystemExit(f"minidockerd: {host}: a port is required (2376 is docker's TLS port)")
    return h.strip("[]") or "127.0.0.1", int(p)


def tls_context(args):
    """Mutual TLS, as ``dockerd --tlsverify``: the API is root on this host, so over the network it is
    offered only to clients holding a certificate signed by our CA. Plain TCP is refused outright."""
    if not args.tlsverify:
        raise SystemExit("minidockerd: refusing to listen on TCP without --tlsverify: anyone who can reach "
                         "the port would be root on this host (give --tlsverify --tlscacert --tlscert --tlskey)")
    missing = [n for n in ("tlscacert", "tlscert", "tlskey") if not getattr(args, n)]
    if missing:
        raise SystemExit("minidockerd: --tlsverify needs " + ", ".join("--" + n for n in missing))
    from .tls import make_context
    return make_context(args.tlscacert, args.tlscert, args.tlskey)


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
    for host in args.host or []:  # refuse a TCP address without mutual TLS before touching any state
        if not host.startswith("unix://"):
            tcp_address(host)
            tls_context(args)
    lock_root(args.root)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

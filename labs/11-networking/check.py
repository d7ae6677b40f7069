"""Checks for lab 11 (networking): wire namespaces through a bridge and publish a port, proven by
traffic. Each check runs in a child of its own (``run_checks``), builds what it needs — namespaces
of its own under a temporary directory, bridges and an nft table named after the child's pid — and
removes all of it with the chapter's code (never yours), also when it fails. Nothing leaves the
machine: the "outside world" is a namespace the check creates.

    .venv/bin/python labs/11-networking/check.py               # checks labs/11-networking/skeleton.py
    .venv/bin/python labs/11-networking/check.py --reference   # checks minidocker.network.links
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parents[1]) not in sys.path:
    sys.path.insert(0, str(HERE.parents[1]))

from minidocker.labs import expect, run_checks  # noqa: E402

REFERENCE = "minidocker.network.links"
NEEDS_ROOT = "network namespaces, links and nftables"
TIMEOUT = 60


class Lab:
    """Names and objects of one check; ``close`` removes every one of them (the chapter's code)."""

    def __init__(self):
        from minidocker.network import netns
        self.tag = f"{os.getpid() % 100000}"
        self.dir = tempfile.mkdtemp(prefix="md-lab11-")
        self.names, self.spaces, self.table = [], [], f"minidocker_lab11_{self.tag}"
        self.netns = netns

    def name(self, suffix: str) -> str:
        n = f"mdl{self.tag}{suffix}"
        self.names.append(n)
        return n

    def space(self, label: str) -> str:
        p = self.netns.create(os.path.join(self.dir, label))
        self.spaces.append(p)
        return p

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        from minidocker.network import links, nft, sysctl
        nft.remove(self.table)
        sysctl.release("net.ipv4.ip_forward", self.table)
        for p in self.spaces:
            self.netns.remove(p)
        for n in self.names:
            links.delete(n)
        os.rmdir(self.dir)


def addresses(name: str) -> list[str]:
    r = subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", name], capture_output=True, text=True)
    return [f"{a['local']}/{a['prefixlen']}" for i in json.loads(r.stdout or "[]") for a in i.get("addr_info", [])]


def serve(lab: Lab, path: str, port: int, reply: bytes):
    srv = lab.netns.in_netns(path, lambda: socket.create_server(("0.0.0.0", port)))

    def loop():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            c.sendall(reply)
            c.close()
    threading.Thread(target=loop, daemon=True).start()
    return srv


def ask(lab: Lab, path: str, ip: str, port: int):
    def go():
        try:
            with socket.create_connection((ip, port), timeout=2) as c:
                return c.recv(64)
        except OSError as e:
            return f"{type(e).__name__}: {e}"
    return lab.netns.in_netns(path, go)


def expect_answer(lab: Lab, server_ns: str, port: int, client_ns: str, ip: str, dport: int, what: str) -> None:
    """A server in ``server_ns`` on ``port``; a client in ``client_ns`` to ``ip:dport`` must get its reply."""
    srv = serve(lab, server_ns, port, b"from-b")
    try:
        expect(what, ask(lab, client_ns, ip, dport), b"from-b")
    finally:
        srv.close()


def check_bridge(m) -> str:
    with Lab() as lab:
        br = lab.name("a")
        m.create_bridge(br, "10.251.0.1", 24)
        expect(f"/sys/class/net/{br}/bridge exists", os.path.isdir(f"/sys/class/net/{br}/bridge"), True)
        expect(f"addresses of {br}", addresses(br), ["10.251.0.1/24"])
        expect(f"{br} is up (IFF_UP in its flags)", int(Path(f"/sys/class/net/{br}/flags").read_text(), 16) & 1, 1)
    return "a bridge, up, with the gateway address"


def check_attach(m) -> str:
    from minidocker.network import links
    with Lab() as lab:
        br, veth, a = lab.name("a"), lab.name("va"), lab.space("a")
        links.create_bridge(br, "10.251.0.1", 24)
        m.attach(a, br, veth, "eth0", "10.251.0.2", 24, "10.251.0.1")
        master = Path(f"/sys/class/net/{veth}/master").resolve().name if os.path.exists(f"/sys/class/net/{veth}/master") else None
        expect(f"the bridge {veth} is enslaved to", master, br)
        expect("links inside the namespace", links.names("", a), ["eth0", "lo"])
        expect("routes inside the namespace", sorted(links.routes(a)), ["10.251.0.0/24", "default"])
    return "veth pair: host end on the bridge, eth0 inside with its address and default route"


def check_traffic(m) -> str:
    from minidocker.network import links
    with Lab() as lab:
        br, a, b = lab.name("a"), lab.space("a"), lab.space("b")
        links.create_bridge(br, "10.251.0.1", 24)
        m.attach(a, br, lab.name("va"), "eth0", "10.251.0.2", 24, "10.251.0.1")
        m.attach(b, br, lab.name("vb"), "eth0", "10.251.0.3", 24, "10.251.0.1")
        expect_answer(lab, b, 8080, a, "10.251.0.3", 8080, "a -> 10.251.0.3:8080 answered")
    return "a TCP server in b answers a client in a, through the bridge"


def check_published(m) -> str:
    from minidocker.network import links, nft, sysctl
    with Lab() as lab:
        br, br2, b, w = lab.name("a"), lab.name("o"), lab.space("b"), lab.space("w")
        links.create_bridge(br, "10.251.0.1", 24)
        links.create_bridge(br2, "10.252.0.1", 24)
        m.attach(b, br, lab.name("vb"), "eth0", "10.251.0.3", 24, "10.251.0.1")
        m.attach(w, br2, lab.name("vw"), "eth0", "10.252.0.2", 24, "10.252.0.1")
        sysctl.hold("net.ipv4.ip_forward", "1", lab.table)
        nft.apply(lab.table, [{"bridge": br, "subnet": "10.251.0.0/24", "internal": False}],
                  [{"proto": "tcp", "host_ip": "10.252.0.1", "host_port": 18080, "ip": "10.251.0.3",
                    "port": 8080, "bridge": br}])
        expect_answer(lab, b, 8080, w, "10.252.0.1", 18080, "outside -> 10.252.0.1:18080 (DNAT to b:8080) answered")
    return "the outside namespace reaches b through the published port"


def check_delete(m) -> str:
    from minidocker.network import links
    with Lab() as lab:
        br, veth, a = lab.name("a"), lab.name("va"), lab.space("a")
        links.create_bridge(br, "10.251.0.1", 24)
        links.attach(a, br, veth, "eth0", "10.251.0.2", 24, "10.251.0.1")
        m.delete(veth)
        expect(f"{veth} exists after delete", os.path.exists(f"/sys/class/net/{veth}"), False)
        expect("links left inside the namespace", links.names("", a), ["lo"])
        m.delete(veth)  # missing is not an error
    return "the host end goes and takes its peer along; deleting twice is fine"


CHECKS = [
    ("1 create_bridge: a bridge, up, with the gateway address", check_bridge),
    ("2 attach: veth pair, eth0 inside, address and route", check_attach),
    ("2 attach: traffic between two namespaces", check_traffic),
    ("3 published port: DNAT from the outside namespace", check_published),
    ("4 delete: the link and its peer go", check_delete),
]


def check(module):
    return run_checks(CHECKS, module, timeout=TIMEOUT)


if __name__ == "__main__":
    from minidocker.labs import script_main
    sys.exit(script_main(sys.argv[1:], check, REFERENCE, HERE / "skeleton.py", "lab 11 (networking)",
                         needs_root=NEEDS_ROOT))

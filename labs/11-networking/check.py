"""Checker for lab 11 (wire two namespaces through a bridge, publish a port). Needs root.

    .venv/bin/python labs/11-networking/check.py               # checks labs/11-networking/skeleton.py
    .venv/bin/python labs/11-networking/check.py --reference   # checks minidocker.network.links

The proof is traffic: a TCP server in one namespace answers a client in the other, through the
bridge your functions built; then a port published with the chapter's nftables table (DNAT on the
host's address) reaches it from a third, "outside" namespace on a second bridge. Every object is
removed afterwards with the chapter's own code (never yours), also when a check fails.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parents[1]) not in sys.path:
    sys.path.insert(0, str(HERE.parents[1]))

from minidocker.labs import case  # noqa: E402

REFERENCE = "minidocker.network.links"


def _addresses(name: str) -> list[str]:
    r = subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", name], capture_output=True, text=True)
    return [f"{a['local']}/{a['prefixlen']}" for i in json.loads(r.stdout or "[]") for a in i.get("addr_info", [])]


def _server(path: str, port: int, reply: bytes):
    from minidocker.network import netns

    def make():
        s = socket.socket()
        s.bind(("0.0.0.0", port))
        s.listen(2)
        return s
    srv = netns.in_netns(path, make)

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


def _ask(path: str, ip: str, port: int):
    from minidocker.network import netns

    def go():
        try:
            with socket.create_connection((ip, port), timeout=2) as c:
                return c.recv(64)
        except OSError as e:
            return repr(e)
    return netns.in_netns(path, go)


def check(m) -> list:
    if os.geteuid() != 0:
        return [("root (namespaces, links and nftables need it)", False, "run the checker as root")]
    from minidocker.network import links as ref, netns, nft, sysctl
    tag = f"{os.getpid() % 100000}"
    br, br2, table = f"mdl{tag}a", f"mdl{tag}b", f"minidocker_lab11_{tag}"
    work = tempfile.mkdtemp(prefix="lab11-")
    a, b, w = (os.path.join(work, n) for n in ("a", "b", "w"))
    r = []
    try:
        for p in (a, b, w):
            netns.create(p)

        def bridge():
            m.create_bridge(br, "10.251.0.1", 24)
            state = Path(f"/sys/class/net/{br}/operstate").read_text().strip() if os.path.exists(f"/sys/class/net/{br}") else "missing"
            ok = os.path.isdir(f"/sys/class/net/{br}/bridge") and "10.251.0.1/24" in _addresses(br) and state != "down"
            return ok, f"bridge dir: {os.path.isdir(f'/sys/class/net/{br}/bridge')}, addresses {_addresses(br)}, state {state}"
        r.append(case("create_bridge: a bridge, up, with the gateway address", bridge))

        def wire():
            m.attach(a, br, f"mdl{tag}va", "eth0", "10.251.0.2", 24, "10.251.0.1")
            m.attach(b, br, f"mdl{tag}vb", "eth0", "10.251.0.3", 24, "10.251.0.1")
            master = Path(f"/sys/class/net/mdl{tag}va/master").resolve().name if os.path.exists(f"/sys/class/net/mdl{tag}va/master") else None
            inside = ref.names("", a)
            return master == br and "eth0" in inside, f"host end's master {master}, inside: {inside}"
        r.append(case("attach: veth pair, host end on the bridge, eth0 inside", wire))

        srv = None

        def traffic():
            nonlocal srv
            srv = _server(b, 8080, b"from-b")
            got = _ask(a, "10.251.0.3", 8080)
            return got == b"from-b", f"a -> 10.251.0.3:8080 answered {got!r}"
        r.append(case("traffic: namespace a reaches namespace b through the bridge", traffic))

        def published():
            m.create_bridge(br2, "10.252.0.1", 24)
            m.attach(w, br2, f"mdl{tag}vw", "eth0", "10.252.0.2", 24, "10.252.0.1")
            sysctl.hold("net.ipv4.ip_forward", "1", table)
            nft.apply(table, [{"bridge": br, "subnet": "10.251.0.0/24", "internal": False}],
                      [{"proto": "tcp", "host_ip": "10.252.0.1", "host_port": 18080, "ip": "10.251.0.3",
                        "port": 8080, "bridge": br}])
            got = _ask(w, "10.252.0.1", 18080)
            return got == b"from-b", f"outside -> 10.252.0.1:18080 (DNAT to b:8080) answered {got!r}"
        r.append(case("published port: the outside namespace reaches b via the host's address", published))

        def remove():
            m.delete(f"mdl{tag}va")
            gone = not os.path.exists(f"/sys/class/net/mdl{tag}va")
            return gone, "gone" if gone else "the link is still there"
        r.append(case("delete: the host end goes (and takes its peer along)", remove))
        if srv:
            srv.close()
    finally:
        nft.remove(table)
        sysctl.release("net.ipv4.ip_forward", table)
        for p in (a, b, w):
            netns.remove(p)
        for name in (br, br2, f"mdl{tag}va", f"mdl{tag}vb", f"mdl{tag}vw"):
            try:
                ref.delete(name)
            except Exception:
                pass
        os.rmdir(work)
    return r


if __name__ == "__main__":
    from minidocker.labs import script_main
    sys.exit(script_main(sys.argv[1:], check, REFERENCE, HERE / "skeleton.py", "Lab 11 (networking)",
                         needs_root="namespaces, links and nftables"))

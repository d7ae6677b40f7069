"""Chapter 11 (minidocker/network): unit tests of the pure parts, then real namespaces wired by the
chapter's Networks manager. The "containers" are namespaces this test creates; traffic flows only
between them and on loopback. Every test ends with the leak check (no netns, link, table, hold)."""
from __future__ import annotations

import ipaddress
import os
import socket
import threading

import pytest

from conftest import need_root, need_tool
from minidocker.network import Settings, dns, ipam, nft


# ---- pure parts -------------------------------------------------------------------------------------

def test_pick_subnet_skips_taken_and_host_routes():
    assert ipam.pick_subnet([]) == "172.17.0.0/16"
    assert ipam.pick_subnet(["172.17.5.0/24", "172.16.0.0/12"]) == "192.168.0.0/20"
    with pytest.raises(ipam.IPAMError):
        ipam.pick_subnet(["0.0.0.0/1", "128.0.0.0/1"])


def test_allocator_persists_and_refuses_bad_static(tmp_path):
    a = ipam.Allocator(str(tmp_path / "ipam.json"))
    a.add_network("n", "10.9.0.0/29", ip_range="10.9.0.4/30")
    assert a.pools["n"]["gateway"] == "10.9.0.1"
    first = a.allocate("n", "c1")
    assert ipaddress.ip_address(first) in ipaddress.ip_network("10.9.0.4/30")
    b = ipam.Allocator(str(tmp_path / "ipam.json"))  # a restart
    assert b.allocate("n", "c2") != first
    with pytest.raises(ipam.IPAMError, match="already in use"):
        b.allocate("n", "c3", static=first)
    with pytest.raises(ipam.IPAMError, match="contain the IP"):
        b.allocate("n", "c3", static="10.10.0.2")
    with pytest.raises(ipam.IPAMError, match="overlaps"):
        b.add_network("m", "10.9.0.0/24", others=["10.9.0.0/29"])


def test_dns_codec_answers_and_nxdomain():
    q = dns.query("web", qid=7)
    srv = dns.Server.__new__(dns.Server)
    srv.upstreams, srv.lookup = [], lambda key, name: ["10.0.0.5"] if name == "web" else None
    assert dns.parse_answer(srv.respond("k", q)) == (dns.NOERROR, ["10.0.0.5"])
    assert dns.parse_answer(srv.respond("k", dns.query("web", dns.AAAA))) == (dns.NOERROR, [])
    assert dns.parse_answer(srv.respond("k", dns.query("nope")))[0] == dns.NXDOMAIN
    assert srv.respond("k", b"\x00\x01") is None


def test_ruleset_isolates_and_publishes():
    ports = [{"proto": "tcp", "host_ip": "0.0.0.0", "host_port": 8080, "ip": "10.1.0.2", "port": 80, "bridge": "b1"},
             {"proto": "tcp", "host_ip": "127.0.0.1", "host_port": 8081, "ip": "10.1.0.2", "port": 80, "bridge": "b1"}]
    cmds = nft.ruleset("t", [{"bridge": "b1", "subnet": "10.1.0.0/24", "internal": False},
                             {"bridge": "b2", "subnet": "10.2.0.0/24", "internal": True}], ports)
    rules = [c["add"]["rule"] for c in cmds if "rule" in c.get("add", {})]
    text = repr(rules)
    assert "masquerade" in repr([r for r in rules if r["chain"] == "postrouting"])
    assert "10.2.0.0" not in repr([r for r in rules if r["chain"] == "postrouting"])  # internal: no NAT
    mine = [r for r in rules if r["chain"] == "to-10.1.0.2"]
    assert len(mine) == 2 and "'return'" in repr(mine[0])  # hairpin return + one DNAT: loopback goes through the proxy
    assert "'dnat': {'addr': '10.1.0.2', 'port': 80}" in text
    elems = [c["add"]["element"] for c in cmds if "element" in c.get("add", {})]
    assert [(e["name"], e["elem"]) for e in elems] == [("pub_any", [[{"concat": ["tcp", 8080]}, {"goto": {"target": "to-10.1.0.2"}}]])]
    assert cmds[1] == {"delete": {"table": {"family": "ip", "name": "t"}}}  # atomic replacement
    # a container's own transaction: only its chain and elements, never the table or other rules
    add, delete = nft._container_cmds("add", "t", ports), nft._container_cmds("delete", "t", ports)
    assert {next(iter(c[v])) for c in add for v in c} == {"chain", "rule", "element"}
    assert all(c[v].get("chain", c[v].get("element", {})).get("name") in ("to-10.1.0.2", "pub_any")
               for c in add + delete for v in c if "rule" not in c[v])
    assert all(c[v]["rule"]["chain"] == "to-10.1.0.2" for c in add for v in c if "rule" in c[v])
    assert [next(iter(c)) for c in delete] == ["delete", "flush", "delete"]


# ---- real namespaces ---------------------------------------------------------------------------------

@pytest.fixture
def nets(tmp_path):
    need_root()
    need_tool("nft")
    from minidocker.network import links, manager, sysctl
    tag = f"t{os.getpid() % 100000}"
    before_forward = sysctl.read("net.ipv4.ip_forward")
    s = Settings(state_dir=str(tmp_path / "net"), bridge=f"md{tag}b0", table=f"minidocker_{tag}",
                 default_subnet="")
    n = manager.Networks(s)
    yield n
    for cid in list(n.boxes):
        n.release(cid)
    for net in n.list():
        if net["Name"] != "bridge":
            n.remove(net["Id"])
    n.shutdown()
    # the leak check
    with open("/proc/self/mountinfo") as f:
        assert s.state_dir not in f.read()
    assert not nft.exists(s.table)
    assert not [l for l in links.names("md") if l in {x["bridge"] for x in n.nets.values()} or l.startswith(f"md{tag}")]
    assert s.table not in sysctl.holders("net.ipv4.ip_forward")
    if not sysctl.holders("net.ipv4.ip_forward"):
        assert sysctl.read("net.ipv4.ip_forward") == before_forward


def serve_once(path, port, reply=b"pong"):
    """A TCP server inside the namespace at ``path``; returns the listening socket."""
    from minidocker.network import netns

    def make():
        s = socket.socket()
        s.bind(("0.0.0.0", port))
        s.listen(4)
        return s
    srv = netns.in_netns(path, make)

    def loop():
        while True:
            try:
                c, peer = srv.accept()
            except OSError:
                return
            c.sendall(reply + f" {peer[0]}".encode())
            c.close()
    threading.Thread(target=loop, daemon=True).start()
    return srv


def connect_from(path, ip, port, timeout=1.5):
    from minidocker.network import netns

    def go():
        try:
            with socket.create_connection((ip, port), timeout=timeout) as c:
                return c.recv(100)
        except OSError as e:
            return e
    return netns.in_netns(path, go)


def ask(path, name):
    from minidocker.network import netns

    def go():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.sendto(dns.query(name), ("127.0.0.11", 53))
            return dns.parse_answer(s.recv(512))
    return netns.in_netns(path, go)


def test_user_networks_names_isolation_and_connect(nets):
    n1 = nets.create("n1", subnet="10.201.0.0/24")
    n2 = nets.create("n2", subnet="10.202.0.0/24")
    a = nets.connect("ca" * 32, "n1", name="a", aliases=["web"])
    b = nets.connect("cb" * 32, "n1", name="b")
    c = nets.connect("cc" * 32, "n2", name="c")
    assert a["IPAddress"].startswith("10.201.0.") and c["IPAddress"].startswith("10.202.0.")
    pa, pb, pc = (nets.boxes[x * 32]["netns"] for x in ("ca", "cb", "cc"))
    srv = serve_once(pa, 8000)
    try:
        assert connect_from(pb, a["IPAddress"], 8000).startswith(b"pong")
        # names: on its own network, at once; unknown names and other networks' names: NXDOMAIN
        assert ask(pb, "a") == (dns.NOERROR, [a["IPAddress"]])
        assert ask(pb, "web") == (dns.NOERROR, [a["IPAddress"]])
        assert ask(pc, "a")[0] == dns.NXDOMAIN
        assert ask(pc, "nothing.example")[0] == dns.NXDOMAIN
        # isolation, with forwarding on
        assert open("/proc/sys/net/ipv4/ip_forward").read().strip() == "1"
        assert isinstance(connect_from(pc, a["IPAddress"], 8000), OSError)
        a2 = nets.connect("ca" * 32, "n2", name="a")
        assert connect_from(pc, a2["IPAddress"], 8000).startswith(b"pong")
        assert ask(pc, "a") == (dns.NOERROR, [a2["IPAddress"]])
        nets.disconnect("ca" * 32, "n2")
        assert isinstance(connect_from(pc, a2["IPAddress"], 8000), OSError)
    finally:
        srv.close()


def test_published_port_on_loopback_and_release(nets):
    ep = nets.connect("cd" * 32, "bridge", name="web")
    path = nets.boxes["cd" * 32]["netns"]
    srv = serve_once(path, 80, b"page")
    try:
        [p] = nets.publish("cd" * 32, [{"proto": "tcp", "host_ip": "127.0.0.1", "host_port": 0, "port": 80}])
        with socket.create_connection(("127.0.0.1", p["host_port"]), timeout=5) as c:
            assert c.recv(100).startswith(b"page")
        from minidocker.network.proxy import PortInUse
        with pytest.raises(PortInUse, match="port is already allocated"):
            nets.connect("ce" * 32, "bridge")
            nets.publish("ce" * 32, [{"proto": "tcp", "host_ip": "127.0.0.1", "host_port": p["host_port"], "port": 80}])
    finally:
        srv.close()
    nets.release("cd" * 32)
    assert not os.path.exists(path)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", p["host_port"]), timeout=2)
    assert ep["IPAddress"] not in nets.ipam.pools[nets.get("bridge")["Id"]]["used"]


@pytest.fixture
def outside(tmp_path):
    """The "outside world": a namespace of the test's own, 10.203.0.2/30, linked to the host's
    10.203.0.1/30 by a veth pair (nothing leaves the machine)."""
    need_root()
    from pyroute2 import IPRoute
    from minidocker.network import links, netns
    path = netns.create(str(tmp_path / "world"))
    host_end = f"mdw{os.getpid() % 100000}"
    try:
        with IPRoute() as ipr:
            ipr.link("add", ifname=host_end, kind="veth", peer={"ifname": host_end + "p"})
            idx = ipr.link_lookup(ifname=host_end)[0]
            ipr.addr("add", index=idx, address="10.203.0.1", prefixlen=30)
            ipr.link("set", index=idx, state="up")
            fd = os.open(path, os.O_RDONLY)
            ipr.link("set", index=ipr.link_lookup(ifname=host_end + "p")[0], net_ns_fd=fd)
            os.close(fd)
        def world(w):
            i = w.link_lookup(ifname=host_end + "p")[0]
            w.addr("add", index=i, address="10.203.0.2", prefixlen=30)
            w.link("set", index=i, state="up")
            w.link("set", index=w.link_lookup(ifname="lo")[0], state="up")
        links._in(path, world)
        yield path
    finally:
        with IPRoute() as ipr:
            for i in ipr.link_lookup(ifname=host_end):
                ipr.link("del", index=i)
        netns.remove(path)


def test_nat_out_dnat_in_and_internal(nets, outside):
    ep = nets.connect("cf" * 32, "bridge", name="web")
    inside = nets.boxes["cf" * 32]["netns"]
    nets.create("int", subnet="10.204.0.0/24", internal=True)
    nets.connect("c0" * 32, "int", name="hidden")
    hidden = nets.boxes["c0" * 32]["netns"]
    world = serve_once(outside, 9000, b"world")
    web = serve_once(inside, 80, b"web")
    try:
        # out: masqueraded to the host's address on the way to the world
        assert connect_from(inside, "10.203.0.2", 9000) == b"world 10.203.0.1"
        # internal: no route out at all
        assert isinstance(connect_from(hidden, "10.203.0.2", 9000), OSError)
        # in: DNAT keeps the world's address (the proxy would show the bridge's gateway)
        [p] = nets.publish("cf" * 32, [{"proto": "tcp", "host_ip": "", "host_port": 0, "port": 80}])
        assert connect_from(outside, "10.203.0.1", p["host_port"]) == b"web 10.203.0.2"
        # from the host itself: through the proxy
        with socket.create_connection(("127.0.0.1", p["host_port"]), timeout=5) as c:
            assert c.recv(100) == f"web {ep['Gateway']}".encode()
    finally:
        world.close()
        web.close()


def test_mtu_option_and_refusals(nets):
    from minidocker.network import links, manager
    n = nets.create("mtu", subnet="10.205.0.0/24", options={"com.docker.network.driver.mtu": "1400"})
    nets.connect("c1" * 32, "mtu")
    assert open(f"/sys/class/net/{n['bridge']}/mtu").read().strip() == "1400"
    assert links._in(nets.boxes["c1" * 32]["netns"], lambda ipr: ipr.get_links(ifname="eth0")[0].get_attr("IFLA_MTU")) == 1400
    with pytest.raises(manager.NetworkError, match="not supported"):
        nets.create("bad", options={"com.docker.network.bridge.enable_icc": "false"})
    with pytest.raises(manager.NetworkError, match="invalid MTU"):
        nets.create("bad", options={"com.docker.network.driver.mtu": "9"})
    with pytest.raises(manager.Conflict, match="already exists"):
        nets.create("mtu")


def _table_handle(table: str) -> int:
    import json
    import subprocess
    out = json.loads(subprocess.run(["nft", "-j", "list", "tables"], capture_output=True, text=True).stdout)
    return next(i["table"]["handle"] for i in out["nftables"] if i.get("table", {}).get("name") == table)


def test_start_and_exit_touch_only_their_own(nets):
    """A start on an existing bridge rewrites no nft table, publishing adds only the container's
    chain and map element, and the exit takes them (and the veth pair) away again."""
    from minidocker.network import links
    nets.connect("c2" * 32, "bridge")
    handle = _table_handle(nets.s.table)  # a rewrite is delete + add: a new handle
    ep = nets.connect("c3" * 32, "bridge")
    path = nets.boxes["c3" * 32]["netns"]
    assert links.names("", path) == ["eth0", "lo"]  # the peer was made inside, already named
    subnet = ipaddress.ip_network(f"{ep['IPAddress']}/{ep['IPPrefixLen']}", strict=False)
    assert sorted(links.routes(path)) == sorted(["default", str(subnet)])
    [p] = nets.publish("c3" * 32, [{"proto": "tcp", "host_ip": "", "host_port": 0, "port": 80}])
    listing = nft.listing(nets.s.table)
    assert f"chain to-{ep['IPAddress']}" in listing and f"tcp . {p['host_port']} : goto to-{ep['IPAddress']}" in listing
    assert _table_handle(nets.s.table) == handle
    nets.release("c3" * 32)
    for t in nets._reapers:
        t.join(10)
    listing = nft.listing(nets.s.table)
    assert f"to-{ep['IPAddress']}" not in listing and "chain ports" in listing
    assert _table_handle(nets.s.table) == handle
    assert not os.path.exists(f"/sys/class/net/{ep['veth']}")


def test_recover_gives_back_unrecorded_addresses(nets):
    """An address allocated for a container whose endpoint was never recorded (a crash in between,
    or sandboxes.json older than ipam.json after a power cut) goes back at recovery."""
    nid = nets.get("bridge")["Id"]
    lost = nets.ipam.allocate(nid, "f0" * 32)
    nets.connect("c4" * 32, "bridge")
    nets.recover({"c4" * 32})
    used = nets.ipam.pools[nid]["used"]
    assert lost not in used and "c4" * 32 in used.values()


def test_sandbox_alone_is_lo_up_and_leaves_the_caller_where_it_was(nets):
    """``--network none``: a namespace with only ``lo``, up (127.0.0.1 answers), made by a thread —
    the calling thread stays in its own namespace."""
    from minidocker.network import links, netns
    mine = os.readlink("/proc/thread-self/ns/net")
    path = nets.sandbox("c5" * 32)
    assert os.readlink("/proc/thread-self/ns/net") == mine
    assert links.names("", path) == ["lo"]
    assert links._in(path, lambda ipr: ipr.get_links(1)[0]["flags"] & 1) == 1  # IFF_UP
    srv = serve_once(path, 7000, b"lo")
    try:
        assert connect_from(path, "127.0.0.1", 7000).startswith(b"lo")
    finally:
        srv.close()
    nets.release("c5" * 32)
    assert not netns.is_pinned(path) and not os.path.exists(path)

"""Chapter 11 end to end: the session's daemon (its own bridge and nftables table) driven by the real
docker CLI, docker-py and minidocker. Traffic only on loopback and between the daemon's containers.
The session fixture asserts at the end that no bridge, table, netns pin or ip_forward hold is left."""
from __future__ import annotations

import os
import subprocess
import time
import urllib.request

import pytest

from conftest import need, need_tool

pytestmark = pytest.mark.privileged

PAGE = "sh -c 'mkdir -p /www && echo hello-$HOSTNAME > /www/index.html && exec httpd -f -p 80 -h /www'"


def docker(daemon, *args, timeout=60):
    return subprocess.run([need_tool("docker"), *args], capture_output=True, env=daemon.env(), timeout=timeout)


def ok(r) -> str:
    assert r.returncode == 0, (r.args, r.stdout, r.stderr)
    return r.stdout.decode()


def fetch(url: str, timeout: float = 15.0) -> str:
    """GET, retried until the server in the container listens (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def tag() -> str:
    return f"{os.getpid() % 100000}-{time.monotonic_ns() % 100000}"


def cleanup(daemon, containers=(), networks=()):
    for c in containers:
        docker(daemon, "rm", "-f", c)
    for n in networks:
        docker(daemon, "network", "rm", n)


def test_published_port_on_loopback_docker_cli(daemon):
    name, other = f"web-{tag()}", f"web2-{tag()}"
    try:
        ok(docker(daemon, "run", "-d", "--name", name, "-p", "127.0.0.1::80", "busybox", "sh", "-c", PAGE[7:-1]))
        port = ok(docker(daemon, "port", name, "80")).strip()
        assert port.startswith("127.0.0.1:")
        hostport = port.split(":")[1]
        cid = ok(docker(daemon, "inspect", "-f", "{{.Id}}", name)).strip()
        assert fetch(f"http://{port}/").strip() == f"hello-{cid[:12]}"
        assert f"127.0.0.1:{hostport}->80/tcp" in ok(docker(daemon, "ps", "--filter", f"name={name}"))
        # the same host port again: refused at start with docker's message
        r = docker(daemon, "run", "-d", "--name", other, "-p", f"127.0.0.1:{hostport}:80", "busybox", "true")
        assert r.returncode != 0 and b"port is already allocated" in r.stderr, r.stderr
        ok(docker(daemon, "rm", "-f", name))
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://{port}/", timeout=3)
    finally:
        cleanup(daemon, [name, other])


def test_user_networks_names_isolation_connect_docker_cli(daemon):
    t = tag()
    n1, n2, a = f"n1-{t}", f"n2-{t}", f"a-{t}"
    try:
        ok(docker(daemon, "network", "create", n1))
        ok(docker(daemon, "network", "create", "--subnet", "10.231.0.0/24", "--label", "chapter=11", n2))
        ok(docker(daemon, "run", "-d", "--name", a, "--network", n1, "--network-alias", "alpha", "busybox", "sleep", "300"))
        # by name and by alias, through the embedded DNS server (busybox asks DNS only)
        out = ok(docker(daemon, "run", "--rm", "--network", n1, "busybox", "sh", "-c",
                        f"cat /etc/resolv.conf; ping -c1 -W2 {a} && ping -c1 -W2 alpha"))
        assert "nameserver 127.0.0.11" in out and "1 packets received" in out
        # unknown names: NXDOMAIN at once (no upstream in test daemons)
        t0 = time.monotonic()
        r = docker(daemon, "run", "--rm", "--network", n1, "busybox", "nslookup", "no-such-name.invalid")
        assert r.returncode != 0 and b"NXDOMAIN" in r.stdout + r.stderr and time.monotonic() - t0 < 5
        ip1 = ok(docker(daemon, "inspect", "-f", f"{{{{(index .NetworkSettings.Networks \"{n1}\").IPAddress}}}}", a)).strip()
        # another network: not by IP (forwarding is on), not by name
        assert open("/proc/sys/net/ipv4/ip_forward").read().strip() == "1"
        r = docker(daemon, "run", "--rm", "--network", n2, "busybox", "ping", "-c1", "-W1", ip1)
        assert r.returncode != 0 and b"0 packets received" in r.stdout
        ok(docker(daemon, "network", "connect", "--alias", "alpha2", n2, a))
        ip2 = ok(docker(daemon, "inspect", "-f", f"{{{{(index .NetworkSettings.Networks \"{n2}\").IPAddress}}}}", a)).strip()
        assert ip2.startswith("10.231.0.")
        out = ok(docker(daemon, "run", "--rm", "--network", n2, "busybox", "sh", "-c",
                        f"ping -c1 -W2 {ip2} && ping -c1 -W2 {a} && ping -c1 -W2 alpha2"))
        assert out.count("1 packets received") == 3
        ls = ok(docker(daemon, "network", "ls", "--filter", "label=chapter=11", "--format", "{{.Name}}")).split()
        assert ls == [n2]
        r = docker(daemon, "network", "rm", n2)
        assert r.returncode != 0 and b"active endpoints" in r.stderr
        ok(docker(daemon, "network", "disconnect", n2, a))
        assert ip2 not in ok(docker(daemon, "exec", a, "ip", "-4", "addr"))
        r = docker(daemon, "run", "--rm", "--network", n2, "busybox", "ping", "-c1", "-W1", a)
        assert r.returncode != 0 and b"bad address" in r.stderr
    finally:
        cleanup(daemon, [a], [n1, n2])


def test_modes_host_none_container_and_refusals(daemon):
    a = f"m-{tag()}"
    try:
        ok(docker(daemon, "run", "-d", "--name", a, "busybox", "sleep", "300"))
        ip = ok(docker(daemon, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", a)).strip()
        assert ip
        shared = ok(docker(daemon, "run", "--rm", "--network", f"container:{a}", "busybox", "ip", "-4", "addr"))
        assert f"inet {ip}/" in shared
        host = ok(docker(daemon, "run", "--rm", "--network", "host", "busybox", "ls", "/sys/class/net"))
        assert daemon.bridge in host.split()
        none = ok(docker(daemon, "run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net"))
        assert none.split() == ["lo"]
        r = docker(daemon, "run", "--rm", "--network", "nosuchnet", "busybox", "true")
        assert r.returncode != 0 and b"network nosuchnet not found" in r.stderr
        r = docker(daemon, "run", "--rm", "--ip", "172.30.9.9", "busybox", "true")
        assert r.returncode != 0 and b"user defined networks only" in r.stderr
        r = docker(daemon, "run", "--rm", "--link", f"{a}:x", "busybox", "true")
        assert r.returncode != 0 and b"--link is not supported" in r.stderr
        hosts = ok(docker(daemon, "run", "--rm", "--add-host", "db:10.1.2.3", "--dns-search", "example.test",
                          "--dns", "10.9.9.9", "busybox", "sh", "-c", "cat /etc/hosts /etc/resolv.conf"))
        assert "10.1.2.3\tdb" in hosts and "nameserver 10.9.9.9" in hosts and "search example.test" in hosts
    finally:
        cleanup(daemon, [a])


def test_docker_py_networks_and_ports(daemon):
    try:
        import docker as docker_py
    except ImportError:
        need(False, "docker-py (the 'docker' package in the dev extras)")
    client = docker_py.DockerClient(base_url=daemon.host)
    t = tag()
    net = client.networks.create(f"py-{t}", driver="bridge", labels={"by": "docker-py"})
    web = probe = None
    try:
        web = client.containers.run("busybox", ["sh", "-c", PAGE[7:-1]], detach=True, name=f"pyweb-{t}",
                                    ports={"80/tcp": ("127.0.0.1", None)}, network=net.name)
        web.reload()
        [binding] = web.ports["80/tcp"]
        assert fetch(f"http://127.0.0.1:{binding['HostPort']}/").startswith("hello-")
        net.reload()
        assert web.id in net.attrs["Containers"]
        assert [c.id for c in net.containers] == [web.id]
        out = client.containers.run("busybox", ["nslookup", f"pyweb-{t}"], network=net.name, remove=True)
        assert web.attrs["NetworkSettings"]["Networks"][net.name]["IPAddress"].encode() in out
        probe = client.containers.run("busybox", ["sleep", "300"], detach=True)
        net.connect(probe, aliases=["probe"])
        assert client.containers.run("busybox", ["ping", "-c1", "-W2", "probe"], network=net.name, remove=True)
        net.disconnect(probe)
        assert f"py-{t}" not in [n.name for n in client.networks.list(filters={"dangling": "true"})]
    finally:
        for c in (web, probe):
            if c is not None:
                c.remove(force=True)
    assert net.name in (client.networks.prune(filters={"label": "by=docker-py"})["NetworksDeleted"] or [])
    assert net.name not in [n.name for n in client.networks.list()]


def test_minidocker_cli_network_verbs(daemon):
    t = tag()
    n, a = f"md-{t}", f"mda-{t}"
    try:
        assert daemon.cli("network", "create", "--subnet", "10.232.0.0/24", "--gateway", "10.232.0.254", n).returncode == 0
        assert "10.232.0.254" in daemon.cli("network", "inspect", n).stdout.decode()
        r = daemon.cli("run", "-d", "--name", a, "--network", n, "--ip", "10.232.0.7", "-p", "127.0.0.1::80",
                       "busybox", "sh", "-c", PAGE[7:-1])
        assert r.returncode == 0, r.stderr
        port = daemon.cli("port", a, "80").stdout.decode().strip()
        assert fetch(f"http://{port}/").startswith("hello-")
        assert f"{port}->80/tcp" in daemon.cli("ps").stdout.decode()
        r = daemon.cli("run", "--rm", "--network", n, "busybox", "ping", "-c1", "-W2", a)
        assert b"10.232.0.7" in r.stdout and r.returncode == 0, r.stdout + r.stderr
        assert n in daemon.cli("network", "ls").stdout.decode()
    finally:
        daemon.cli("rm", "-f", a)
        daemon.cli("network", "rm", n)
    assert n not in daemon.cli("network", "ls").stdout.decode()


def test_kill_9_and_restart_keeps_running_containers_networking(tmp_path):
    """The daemon dies; its containers do not. On restart the DNS sockets, proxies and rules of
    the running ones come back, and what belonged to a container that died meanwhile is removed."""
    import signal
    from conftest import Daemon, leftovers, network_leftovers, need_root
    need_root()
    base = str(tmp_path)
    d = Daemon(base).start()
    d2 = None
    try:
        ok(docker(d, "network", "create", "--subnet", "10.233.0.0/24", "rn"))
        ok(docker(d, "run", "-d", "--name", "web", "--network", "rn", "-p", "127.0.0.1::80", "busybox", "sh", "-c", PAGE[7:-1]))
        ok(docker(d, "run", "-d", "--name", "probe", "--network", "rn", "busybox", "sleep", "300"))
        ok(docker(d, "run", "-d", "--name", "doomed", "--network", "rn", "busybox", "sleep", "300"))
        port = ok(docker(d, "port", "web", "80")).strip()
        doomed_pid = int(ok(docker(d, "inspect", "-f", "{{.State.Pid}}", "doomed")))
        doomed_ns = ok(docker(d, "inspect", "-f", "{{.NetworkSettings.SandboxKey}}", "doomed")).strip()
        assert fetch(f"http://{port}/").startswith("hello-")
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        os.kill(doomed_pid, signal.SIGKILL)  # dies while nobody watches
        d2 = Daemon(base).start()
        assert fetch(f"http://{port}/").startswith("hello-")  # the proxy is back on the same port
        out = ok(docker(d2, "exec", "probe", "nslookup", "web"))  # so is the DNS server
        assert ok(docker(d2, "inspect", "-f", "{{.NetworkSettings.Networks.rn.IPAddress}}", "web")).strip() in out
        assert not os.path.exists(doomed_ns)
        with open("/proc/self/mountinfo") as f:
            assert doomed_ns not in f.read()
    finally:
        live = d2 or d
        if live.proc and live.proc.poll() is None:
            live.remove_all()
            docker(live, "network", "rm", "rn")
        for x in (d, d2):
            if x:
                x.stop()
    assert not network_leftovers(d)
    assert not [x for x in leftovers(base) if x.startswith("mount")]


def test_netlink_runs_in_a_helper_process_that_ends_with_the_daemon(tmp_path):
    """pyroute2 (~25 MB) never loads into minidockerd: its netlink calls run in one helper process
    (network/worker.py), started at the first bridge container and ended by a clean stop."""
    from conftest import Daemon, need_root
    need_root()
    d = Daemon(str(tmp_path)).start()
    try:
        ok(docker(d, "run", "--rm", "busybox", "true"))          # the default bridge: netlink work

        def helpers():
            found = []
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        cmd = f.read()
                    with open(f"/proc/{pid}/status") as f:
                        ppid = next(int(l.split()[1]) for l in f if l.startswith("PPid:"))
                except (OSError, StopIteration):
                    continue
                if ppid == d.proc.pid and b"minidocker.network.worker" in cmd:
                    found.append(int(pid))
            return found
        [helper] = helpers()
        ok(docker(d, "run", "--rm", "busybox", "true"))
        assert helpers() == [helper]                             # one helper, reused
    finally:
        left = d.shutdown()
    assert not os.path.exists(f"/proc/{helper}"), "the netlink helper outlived the daemon"
    assert not left, left

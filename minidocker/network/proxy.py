"""The userland proxy for published ports (Docker's ``docker-proxy``): the daemon listens on the
host's ``ip:port`` and copies each connection to ``container_ip:port``.

Why a proxy, when nftables DNAT does the job for packets from other machines/namespaces? Because
of the host's *own* connections to a loopback address: ``curl 127.0.0.1:8080``. Packets to
127.0.0.1 never pass PREROUTING; an OUTPUT-chain DNAT sends them to the bridge with a 127.0.0.1
*source*, which the kernel drops as a martian unless ``route_localnet=1`` is set on the bridge —
and that setting lets containers send packets to the host's 127.0.0.1 services (the CVE-2020-8558
class of bug) unless another rule drops loopback-sourced traffic into the bridge. A listening
socket needs none of that: nothing is routed from or to 127/8, the host's loopback services stay
unreachable, and the bound socket also *reserves* the port (a second container publishing it is
refused: "port is already allocated"). Its cost is a copy through user space per byte (see
bench/). minidocker uses the proxy for every published port (it also catches local connections
to the host's other addresses) and DNAT for traffic that arrives from elsewhere.
"""
from __future__ import annotations

import socket
import threading


class PortInUse(OSError):
    pass


class Proxy:
    """One published port: ``proto`` tcp|udp, listening on ``(host_ip, host_port)``
    (port 0: the kernel picks one; see ``host_port`` afterwards), forwarding to ``(ip, port)``."""

    def __init__(self, proto: str, host_ip: str, host_port: int, ip: str, port: int):
        self.proto, self.target = proto, (ip, int(port))
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        self.sock = socket.socket(socket.AF_INET, kind | socket.SOCK_CLOEXEC)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host_ip or "0.0.0.0", int(host_port)))
        except OSError as e:
            self.sock.close()
            raise PortInUse(e.errno, f"Bind for {host_ip or '0.0.0.0'}:{host_port} failed: port is already allocated") from None
        self.host_ip, self.host_port = self.sock.getsockname()
        self.closed = False
        if proto == "tcp":
            self.sock.listen(128)
            target = self._accept
        else:
            target = self._udp
        threading.Thread(target=target, name=f"proxy-{self.host_port}", daemon=True).start()

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client):
        try:
            upstream = socket.create_connection(self.target, timeout=10)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
        back.start()
        _pipe(client, upstream)
        back.join()
        upstream.close()
        client.close()

    def _udp(self):
        """Each client address gets its own socket to the container (so replies find it back)."""
        peers: dict = {}
        while not self.closed:
            try:
                data, addr = self.sock.recvfrom(65535)
            except OSError:
                return
            up = peers.get(addr)
            if up is None:
                up = peers[addr] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                up.connect(self.target)
                threading.Thread(target=self._udp_back, args=(up, addr), daemon=True).start()
            up.send(data)

    def _udp_back(self, up, addr):
        up.settimeout(90)
        while not self.closed:
            try:
                self.sock.sendto(up.recv(65535), addr)
            except OSError:
                up.close()
                return


def pump(src, dst, half_close) -> None:
    """Copy ``src`` to ``dst`` until EOF or an error, then ``half_close()`` (the TLS relay uses it too)."""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:  # ssl.SSLError included
        pass
    finally:
        half_close()


def _pipe(src, dst):
    """Pass the half-close on (HTTP clients rely on it)."""
    def half_close():
        for sock, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                sock.shutdown(how)
            except OSError:
                pass
    pump(src, dst, half_close)

"""The embedded DNS server: 127.0.0.11 inside every container on a user-defined network (as Docker).

Why a DNS server and not just /etc/hosts: busybox's ``nslookup`` (and many programs) ask DNS only,
and the busybox image has no nsswitch.conf. So each container's /etc/resolv.conf says
``nameserver 127.0.0.11``, and the daemon opens a UDP socket bound to 127.0.0.11:53 *inside the
container's network namespace* (``netns.in_netns``: a thread joins the namespace, creates and binds
the socket, leaves) — the socket keeps belonging to that namespace, while the daemon serves it
from its own thread. The answer depends on *which* socket a query came in on: a container sees
the names (container names, aliases, short ids) of the networks it is attached to, nothing else.

Names it does not know go to the upstream servers when there are any; when there are none it
answers NXDOMAIN at once (never a silent drop: the resolver would wait seconds for each try).

The message format is RFC 1035 §4: a 12-byte header, the question (length-prefixed labels), then
answers that point back at the question's name (compression pointer 0xC00C). Written by hand with
``struct`` — about forty lines, and the wire format is the lesson; a library would hide it.
"""
from __future__ import annotations

import ipaddress
import os
import selectors
import socket
import struct
import threading

from . import netns

A, AAAA, IN = 1, 28, 1
NOERROR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 2, 3, 4, 5
ADDRESS = "127.0.0.11"


def parse_query(data: bytes) -> tuple[int, int, str, int, int]:
    """(id, flags, name, qtype, end of question) of a query; ValueError if malformed."""
    if len(data) < 12:
        raise ValueError("short header")
    qid, flags, qdcount = struct.unpack("!HHH", data[:6])
    if qdcount != 1:
        raise ValueError("one question expected")
    labels, i = [], 12
    while True:
        if i >= len(data):
            raise ValueError("truncated name")
        n = data[i]
        i += 1
        if n == 0:
            break
        if n & 0xC0:
            raise ValueError("compressed name in a question")
        labels.append(data[i:i + n].decode("ascii", "replace"))
        i += n
    if i + 4 > len(data):
        raise ValueError("truncated question")
    qtype, qclass = struct.unpack("!HH", data[i:i + 4])
    return qid, flags, ".".join(labels).lower(), qtype, i + 4


def query(name: str, qtype: int = A, qid: int = 0x1234) -> bytes:
    """A query message (the tests and notebook ask with it)."""
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.strip(".").split(".")) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", qtype, IN)


def answer(data: bytes, addresses: list[str], rcode: int = NOERROR, recursion: bool = False) -> bytes:
    """The reply to ``data`` with A records for ``addresses`` (TTL 600, as Docker's)."""
    qid, flags, _name, _qtype, end = parse_query(data)
    out_flags = 0x8000 | (flags & 0x7900) | (0x0080 if recursion else 0) | rcode  # QR, opcode, RD
    head = struct.pack("!HHHHHH", qid, out_flags, 1, len(addresses), 0, 0)
    rrs = b"".join(struct.pack("!HHHIH", 0xC00C, A, IN, 600, 4) + ipaddress.IPv4Address(a).packed
                   for a in addresses)
    return head + data[12:end] + rrs


def parse_answer(data: bytes) -> tuple[int, list[str]]:
    """(rcode, A addresses) of a reply — for tests and the notebook."""
    _qid, flags, _q, an = struct.unpack("!HHHH", data[:8])
    *_, end = parse_query(data[:4] + struct.pack("!H", 1) + data[6:])
    addrs, i = [], end
    for _ in range(an):
        i += 2 if data[i] & 0xC0 else data.index(b"\0", i) + 1 - i
        rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", data[i:i + 10])
        if rtype == A:
            addrs.append(str(ipaddress.IPv4Address(data[i + 10:i + 14])))
        i += 10 + rdlen
    return flags & 0xF, addrs


class Server:
    """One thread serving every container's 127.0.0.11 socket. ``lookup(key, name)`` -> addresses
    or None (unknown), where ``key`` says whose socket the query came in on."""

    def __init__(self, lookup, upstreams=()):
        self.lookup = lookup
        self.upstreams = list(upstreams)
        self.sel = selectors.DefaultSelector()
        self.socks: dict[str, socket.socket] = {}
        self.lock = threading.Lock()
        self.wake_r, self.wake_w = socket.socketpair()
        self.sel.register(self.wake_r, selectors.EVENT_READ, None)
        self.thread = threading.Thread(target=self._loop, name="dns", daemon=True)
        self.stopped = False
        self.thread.start()

    def add(self, key: str, netns_path: str) -> None:
        """Open 127.0.0.11:53/udp inside the namespace at ``netns_path`` for ``key`` (once)."""
        if key in self.socks:
            return
        def bind():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            s.bind((ADDRESS, 53))
            return s
        s = netns.in_netns(netns_path, bind)
        with self.lock:
            self.socks[key] = s
        self.sel.register(s, selectors.EVENT_READ, key)
        self.wake_w.send(b"x")

    def remove(self, key: str) -> None:
        with self.lock:
            s = self.socks.pop(key, None)
        if s:
            self._close(s)

    def _close(self, s):
        try:
            self.sel.unregister(s)
        except (KeyError, ValueError):
            pass
        s.close()

    def close(self) -> None:
        self.stopped = True
        self.wake_w.send(b"x")
        self.thread.join(5)
        for key in list(self.socks):
            self.remove(key)
        self.wake_r.close()
        self.wake_w.close()

    def _loop(self):
        while not self.stopped:
            for sk, _ in self.sel.select():
                if sk.data is None:
                    self.wake_r.recv(512)
                    continue
                try:
                    data, peer = sk.fileobj.recvfrom(4096)
                except OSError:
                    continue
                reply = self.respond(sk.data, data, sk.fileobj, peer)
                if reply:
                    try:
                        sk.fileobj.sendto(reply, peer)
                    except OSError:
                        pass

    def respond(self, key: str, data: bytes, sock=None, peer=None) -> bytes | None:
        try:
            _qid, flags, name, qtype, _end = parse_query(data)
        except ValueError:
            return None
        if flags & 0x8000:
            return None  # a reply, not a query
        if (flags >> 11) & 0xF:
            return answer(data, [], NOTIMP)
        addrs = self.lookup(key, name.rstrip("."))
        if addrs is not None:
            return answer(data, addrs if qtype == A else [], NOERROR, recursion=bool(self.upstreams))
        if self.upstreams and sock is not None:
            threading.Thread(target=self._forward, args=(data, sock, peer), daemon=True).start()
            return None
        return answer(data, [], NXDOMAIN)

    def _forward(self, data, sock, peer):
        """Ask the upstreams (from the daemon's namespace) and relay the first reply."""
        for up in self.upstreams:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.settimeout(2)
                try:
                    u.sendto(data, (up, 53))
                    reply = u.recv(4096)
                    sock.sendto(reply, peer)
                    return
                except OSError:
                    continue
        try:
            sock.sendto(answer(data, [], SERVFAIL), peer)
        except OSError:
            pass

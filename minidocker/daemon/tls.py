"""The daemon's TCP socket: mutual TLS in front of the UNIX-socket API (``dockerd --tlsverify``).

What this teaches
-----------------
The Engine API is root on the host, so over a network it must authenticate the *client*: the daemon
asks for a client certificate and accepts only those signed by its CA (``ssl.CERT_REQUIRED``) —
there is no password. Plain TCP is refused outright (see main.py).

Why a relay instead of asyncio's TLS transport? ``docker run``/``exec`` half-close the connection
when their stdin ends (TLS ``close_notify`` + TCP FIN) and still expect every byte of output.
asyncio's SSL transport closes the whole connection when the peer's close_notify arrives, so the
output would be lost. A blocking ``ssl.SSLSocket`` reports the peer's close_notify as ``recv() ==
b""`` and can keep sending, which is exactly TCP's half-close. So each TLS connection gets two
threads copying bytes to and from the daemon's own UNIX socket, forwarding the half-close as
``shutdown(SHUT_WR)``. RFC 8446 §6.1 (closure alerts), ssl(3) "SSLSocket".
"""
from __future__ import annotations

import logging
import socket
import ssl
import threading

from ..network.proxy import pump as _pump  # one copy loop: the published-port proxy's

log = logging.getLogger("minidockerd")


def make_context(cafile: str, certfile: str, keyfile: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(certfile, keyfile)
    ctx.load_verify_locations(cafile=cafile)
    ctx.verify_mode = ssl.CERT_REQUIRED  # no client certificate signed by our CA, no API
    return ctx


def _serve(conn: socket.socket, ctx: ssl.SSLContext, unix_path: str) -> None:
    try:
        conn.settimeout(30)
        tls = ctx.wrap_socket(conn, server_side=True)  # the handshake checks the client's certificate
        tls.settimeout(None)
    except (OSError, ssl.SSLError) as e:
        log.info("TLS connection refused: %s", e)
        conn.close()
        return
    up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        up.connect(unix_path)
    except OSError:
        tls.close()
        up.close()
        return

    def up_eof():  # the client's close_notify/FIN becomes a half-close towards the API
        try:
            up.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    t = threading.Thread(target=_pump, args=(tls, up, up_eof), daemon=True)
    t.start()
    _pump(up, tls, lambda: None)  # the API's answer, until the daemon closes
    t.join(1)
    for s in (tls, up):
        try:
            s.close()
        except OSError:
            pass


def serve_tls(host: str, port: int, ctx: ssl.SSLContext, unix_path: str) -> socket.socket:
    """Listen on host:port; relay every verified TLS connection to the API's UNIX socket."""
    lsock = socket.create_server((host, port), reuse_port=False)

    def accept_loop():
        while True:
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            threading.Thread(target=_serve, args=(conn, ctx, unix_path), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    return lsock

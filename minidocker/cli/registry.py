"""CLI verbs of the registry chapter: pull, push, login, logout, registry serve.

Like docker, the CLI does no registry traffic for pull/push: it reads the user's credentials from
``~/.docker/config.json`` (minidocker.registry.auth, standard library only), sends them to the
daemon in ``X-Registry-Auth``, and draws the daemon's NDJSON progress -- one bar per layer with
rich when the output is a terminal (rich is imported only then), docker's plain lines otherwise.
"""
from __future__ import annotations

import argparse
import getpass
import sys
import urllib.parse

from .client import APIError

HUB = "docker.io"


def registry_host(image: str) -> str:
    """docker's splitDockerDomain: the first component is a host if it has '.' or ':' or is localhost."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return HUB


def auth_header(host: str) -> dict:
    from ..registry.auth import AuthError, load_credentials
    try:
        creds = load_credentials(host)
    except AuthError as e:
        print(f"WARNING: {e}", file=sys.stderr)
        return {}
    return {"X-Registry-Auth": creds.to_header(host)} if creds else {}


def split_tag(image: str) -> tuple[str, str]:
    if "@" in image:
        name, digest = image.split("@", 1)
        return name, digest
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        return tuple(image.rsplit(":", 1))
    return image, ""


class Printer:
    """Shows a pull/push progress stream: rich bars on a terminal, docker's plain lines otherwise."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.rich = None
        if not quiet and sys.stdout.isatty():
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn  # lazily: only here
            self.rich = Progress(TextColumn("{task.fields[ident]}"), TextColumn("{task.description:<22}"),
                                 BarColumn(), DownloadColumn(), transient=False)
            self.tasks: dict[str, int] = {}
            self.rich.start()

    def show(self, msg: dict) -> None:
        if msg.get("error"):
            self.close()
            raise APIError(500, msg["error"])
        status, ident = msg.get("status"), msg.get("id")
        if self.quiet or status is None:
            return
        detail = msg.get("progressDetail") or {}
        if self.rich is not None and ident and not status.startswith("Pulling from"):
            if ident not in self.tasks:
                self.tasks[ident] = self.rich.add_task(status, ident=ident, total=None)
            task = self.tasks[ident]
            if detail.get("total"):
                self.rich.update(task, description=status, completed=detail.get("current", 0), total=detail["total"])
            else:
                done = status in ("Pull complete", "Pushed", "Already exists", "Layer already exists",
                                  "Download complete") or status.startswith("Mounted")
                t = self.rich.tasks[[x.id for x in self.rich.tasks].index(task)]
                self.rich.update(task, description=status,
                                 **({"completed": t.total or 1, "total": t.total or 1} if done else {}))
            return
        if status in ("Downloading", "Pushing", "Extracting"):
            return  # plain output: docker prints the bars only on a terminal
        if self.rich is not None:
            self.rich.console.print((f"{ident}: " if ident else "") + status)
        else:
            print((f"{ident}: " if ident else "") + status, flush=True)

    def close(self) -> None:
        if self.rich is not None:
            self.rich.stop()
            self.rich = None


def cmd_pull(c, a) -> int:
    name, tag = split_tag(a.image)
    query = {"fromImage": name, "tag": tag or "latest"}
    if a.platform:
        query["platform"] = a.platform
    p = Printer(a.quiet)
    try:
        for msg in c.stream("POST", "/images/create", query=query, headers=auth_header(registry_host(name))):
            p.show(msg)
    finally:
        p.close()
    if a.quiet:
        print(a.image if (":" in a.image.rsplit("/", 1)[-1] or "@" in a.image) else a.image + ":latest")
    return 0


def cmd_push(c, a) -> int:
    name, tag = split_tag(a.image)
    query = {"tag": tag} if tag else {}
    p = Printer(a.quiet)
    try:
        for msg in c.stream("POST", f"/images/{name}/push", query=query, headers=auth_header(registry_host(name))):
            p.show(msg)
    finally:
        p.close()
    return 0


def _server_host(server: str | None) -> str:
    if not server:
        return HUB
    host = urllib.parse.urlsplit(server if "://" in server else "//" + server).netloc or server
    return HUB if host in ("index.docker.io", "registry-1.docker.io", HUB) else host


def cmd_login(c, a) -> int:
    from ..registry.auth import AuthError, Credentials, store_credentials
    host = _server_host(a.server)
    user = a.username or input("Username: ")
    if a.password_stdin:
        password = sys.stdin.read().rstrip("\n")
    else:
        password = a.password if a.password is not None else getpass.getpass("Password: ")
        if a.password is not None:
            print("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", file=sys.stderr)
    if not user or not password:
        print("Error: username and password are required", file=sys.stderr)
        return 1
    reply = c.request("POST", "/auth", body={"username": user, "password": password, "serveraddress": host}).check()
    token = (reply.json() or {}).get("IdentityToken") or ""
    try:
        where = store_credentials(host, Credentials(user, "" if token else password, token))
    except (AuthError, OSError) as e:
        print(f"Error saving credentials: {e}", file=sys.stderr)
        return 1
    print(f"WARNING! Your credentials are stored unencrypted in '{where}'." if where.endswith(".json")
          else f"Credentials stored with {where}.", file=sys.stderr)
    print("Login Succeeded")
    return 0


def cmd_logout(c, a) -> int:
    from ..registry.auth import erase_credentials
    host = _server_host(a.server)
    print(f"Removing login credentials for {host}")
    if not erase_credentials(host):
        print(f"WARNING: could not erase credentials: {host}: not logged in", file=sys.stderr)
    return 0


def cmd_registry(c, a) -> int:
    args = list(a.registry_args)
    if not args or args[0] != "serve":
        print("usage: minidocker registry serve [--port N] [--root DIR] [--htpasswd FILE]", file=sys.stderr)
        return 2
    from ..registry import server
    return server.main(args[1:])


def add_pull(sub, verb: str) -> None:
    p = sub.add_parser(verb, help="download an image from a registry")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--platform", help="os/arch[/variant] to pick from a multi-platform image")
    p.add_argument("image")
    p.set_defaults(fn=cmd_pull)


def add_push(sub, verb: str) -> None:
    p = sub.add_parser(verb, help="upload an image to a registry")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("image")
    p.set_defaults(fn=cmd_push)


def add_login(sub, verb: str) -> None:
    p = sub.add_parser(verb, help="log in to a registry (stores credentials in ~/.docker/config.json)")
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password")
    p.add_argument("--password-stdin", action="store_true")
    p.add_argument("server", nargs="?")
    p.set_defaults(fn=cmd_login)


def add_logout(sub, verb: str) -> None:
    p = sub.add_parser(verb, help="log out from a registry")
    p.add_argument("server", nargs="?")
    p.set_defaults(fn=cmd_logout, local=True)


def add_registry(sub, verb: str) -> None:
    p = sub.add_parser(verb, help="run a small registry: `minidocker registry serve --port 5000`")
    p.add_argument("registry_args", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_registry, local=True)

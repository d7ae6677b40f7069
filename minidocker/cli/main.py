"""minidocker: the command-line client. It speaks the Docker Engine API to minidockerd — nothing else.

What this teaches
-----------------
How a CLI of ~45 verbs dispatches: ``argv`` -> the verb's parser -> the verb's function, called with a
:class:`~.client.Client` for the daemon named by ``-H`` / ``$MINIDOCKER_HOST`` / ``$DOCKER_HOST``
(with ``--tlsverify``: mutual TLS, as dockerd's ``tcp://`` hosts want). This module is only that; the
verbs live by idea in their own modules (the table :data:`VERBS`): ``run``'s request choreography in
``run.py``, the other container verbs in ``containers.py``, ``exec``/``attach`` in ``attach.py``, each
chapter's verbs beside its flags (``cgroups.py``, ``networks.py``, ``volumes.py``, ``images.py``...).

Start-up is paid at every command (``minidocker run`` is benchmarked against podman), so: the
standard library only, and only what the invoked verb needs. :func:`requested_verb` finds the verb in
``argv`` before argparse runs, and :func:`build_parser` imports that verb's module and builds that
verb's parser alone — building all ~45 costs 30 ms or more and imports every module. ``minidocker``,
``minidocker --help`` and an unknown verb get the whole table, so the help and argparse's errors
list every verb.

Exit codes as docker's: the verb's own, 125 when the daemon failed a ``run``/``create``, 1 for other
errors, 64 for a ``--format`` template that does not parse, 130 after Ctrl-C in a streaming verb.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..timing import mark
from .client import APIError, Client, DaemonNotRunning
from .output import EXIT_DAEMON_ERROR, err
from .signals import Interrupted

# verb -> (module of minidocker.cli, the function that adds the verb's parser: fn(subparsers, verb)).
# The order is the order of `minidocker --help`.
VERBS: dict[str, tuple[str, str]] = {
    "exec": ("attach", "add_exec"), "attach": ("attach", "add_attach"),
    "restart": ("containers", "add_restart"), "rename": ("containers", "add_rename"),
    "top": ("containers", "add_top"), "cp": ("containers", "add_cp"), "events": ("system", "add_events"),
    "container": ("containers", "add_container"), "system": ("system", "add_system"),
    "run": ("run", "add_run"), "create": ("run", "add_create"), "start": ("run", "add_start"),
    "rm": ("containers", "add_one_request"), "stop": ("containers", "add_one_request"),
    "kill": ("containers", "add_one_request"), "wait": ("containers", "add_one_request"),
    "ps": ("containers", "add_ps"),
    "images": ("images", "add_images"), "tag": ("images", "add_top_level"), "rmi": ("images", "add_top_level"),
    "history": ("images", "add_top_level"), "save": ("images", "add_top_level"),
    "load": ("images", "add_top_level"), "import": ("images", "add_top_level"), "image": ("images", "add_image"),
    "build": ("build", "add_build"),
    "inspect": ("containers", "add_inspect"), "logs": ("containers", "add_logs"),
    "pause": ("cgroups", "add_pause"), "unpause": ("cgroups", "add_pause"), "stats": ("cgroups", "add_stats"),
    "version": ("system", "add_version"), "info": ("system", "add_info"),
    "doctor": ("system", "add_doctor"), "lab": ("system", "add_lab"),
    "diff": ("cow", "add_diff"), "commit": ("cow", "add_commit"),
    "network": ("networks", "add_network"), "port": ("networks", "add_port"),
    "pull": ("registry", "add_pull"), "push": ("registry", "add_push"), "login": ("registry", "add_login"),
    "logout": ("registry", "add_logout"), "registry": ("registry", "add_registry"),
    "volume": ("volumes", "add_volume"),
}

# Global options that take a value: skipped when looking for the verb in argv.
_VALUED_GLOBALS = {"-H", "--host", "--tlscacert", "--tlscert", "--tlskey"}


def requested_verb(argv: list[str]) -> str | None:
    """The verb in ``argv`` (``ps`` in ``-H unix:///x ps -a``), or None (none, or ``--help`` first)."""
    it = iter(argv)
    for arg in it:
        if arg in ("-h", "--help"):
            return None
        if arg in _VALUED_GLOBALS:
            next(it, None)
        elif not arg.startswith("-"):
            return arg
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line: the global options and the verbs of :data:`VERBS` (just ``only``, if given)."""
    p = argparse.ArgumentParser(prog="minidocker", description="A container engine to read: the client.",
                                epilog="The daemon (minidockerd) must be running; see `minidocker doctor`.")
    p.add_argument("-H", "--host", help="daemon socket (default $MINIDOCKER_HOST, $DOCKER_HOST, unix:///run/minidocker.sock)")
    p.add_argument("--tlsverify", action="store_true", default=bool(os.environ.get("DOCKER_TLS_VERIFY")),
                   help="use TLS and verify the daemon (tcp:// hosts); certificates from --tls* or $DOCKER_CERT_PATH")
    p.add_argument("--tlscacert")
    p.add_argument("--tlscert")
    p.add_argument("--tlskey")
    sub = p.add_subparsers(dest="verb", metavar="COMMAND")
    for verb, (module, adder) in VERBS.items():
        if only is None or verb == only:
            getattr(importlib.import_module(f".{module}", __package__), adder)(sub, verb)
    return p


def tls_context(a):
    """The client side of dockerd's --tlsverify: verify the daemon's certificate against the CA and
    present our own (mutual TLS). Files default to $DOCKER_CERT_PATH/{ca,cert,key}.pem."""
    import ssl
    base = os.environ.get("DOCKER_CERT_PATH") or os.path.expanduser("~/.docker")
    ctx = ssl.create_default_context(cafile=a.tlscacert or os.path.join(base, "ca.pem"))
    ctx.load_cert_chain(a.tlscert or os.path.join(base, "cert.pem"), a.tlskey or os.path.join(base, "key.pem"))
    return ctx


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    mark("cli", "interpreter and imports")
    verb = requested_verb(argv)
    # A known verb: only its parser. No verb (or `--help`), or an unknown one: all of them, for the
    # help and for argparse's "invalid choice" error, which lists them.
    parser = build_parser(only=verb if verb in VERBS else None)
    a = parser.parse_args(argv)
    if not getattr(a, "fn", None):
        parser.print_help()
        return 0
    if getattr(a, "local", False):
        return a.fn(None, a)
    try:
        if a.tlsverify:
            from . import client as client_module
            client_module.DEFAULT_TLS = tls_context(a)
        c = Client(a.host)
    except (ValueError, NotImplementedError, OSError) as e:
        err(str(e))
        return 1
    try:
        rc = a.fn(c, a)
    except DaemonNotRunning as e:
        print(str(e), file=sys.stderr)
        return EXIT_DAEMON_ERROR if a.verb == "run" else 1
    except APIError as e:
        print(str(e), file=sys.stderr)
        return EXIT_DAEMON_ERROR if a.verb in ("run", "create") else 1
    except Interrupted as e:
        sys.stdout.flush()
        return e.code
    except ValueError as e:
        from .gotemplate import TemplateError  # (imported only when needed: `run` never formats)
        if not isinstance(e, TemplateError):
            raise
        # docker: 64 when the template does not parse, 1 when it fails to run
        print(f"template parsing error: {e}" if e.phase == "parse" else f"failed to execute template: {e}",
              file=sys.stderr)
        return 64 if e.phase == "parse" else 1
    except BrokenPipeError:
        return 0
    sys.stdout.flush()
    return rc


if __name__ == "__main__":
    sys.exit(main())

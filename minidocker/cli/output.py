"""How the CLI prints: aligned tables and docker's ``--format`` for listings and objects.

Two families, as in the docker CLI (cli/command/formatter and cli/command/inspect):

* **listings** (``ps``, ``images``, ``stats``, ``system df``): each item is a :class:`Row` of docker's
  column names (``.ID``, ``.Names``, ``.RunningFor``...). ``--format`` is preprocessed as docker does —
  ``\\t``/``\\n`` typed literally become tab/newline, ``json`` means ``{{json .}}``, a leading ``table``
  adds a header row (the same template executed on the column titles) and aligns the columns;
* **objects** (``inspect``, ``version``, ``info``, ``events``): the template runs on the API's JSON
  as it is, with no preprocessing.

Tables are aligned as Go's text/tabwriter with docker's settings (minimum cell width 10, padding 3).
Templates are parsed before any output, so a bad one prints nothing but its error. Human sizes and
durations (``2.14MB``, ``3 minutes ago``) are :mod:`minidocker.units`'.

And how the CLI reports a failure: ``minidocker: …`` on stderr (:func:`err`), exit code 125 when the
daemon failed a ``run``/``create`` (:data:`EXIT_DAEMON_ERROR`, as docker).

The template engine (:mod:`.gotemplate`) is imported by the functions that format, not here:
``minidocker run`` imports this module and never formats.
"""
from __future__ import annotations

import json
import sys

__all__ = ["table", "aligned", "listing", "objects", "print_inspected", "short", "err", "EXIT_DAEMON_ERROR"]

EXIT_DAEMON_ERROR = 125  # docker run/create: the daemon (not the container) failed


def err(msg: str) -> None:
    print(f"minidocker: {msg}", file=sys.stderr)


def short(cid: str) -> str:
    """An ID as listings print it: its first 12 hex digits."""
    return cid[:12]


def aligned(lines: list[list[str]], minwidth: int = 10, padding: int = 3) -> str:
    """Cells separated by tabs -> columns (text/tabwriter): every cell but a line's last is padded
    to its column's width, at least ``minwidth`` and ``padding`` more than its longest cell."""
    widths: dict[int, int] = {}
    for cells in lines:
        for i, cell in enumerate(cells[:-1]):
            widths[i] = max(widths.get(i, minwidth), len(cell) + padding)
    return "\n".join("".join(c.ljust(widths[i]) for i, c in enumerate(cells[:-1])) + cells[-1]
                     if cells else "" for cells in lines)


def table(rows: list[list[str]], headers: list[str], minwidth: int = 10) -> str:
    """A header line and rows, aligned as docker's listings are."""
    return aligned([list(map(str, headers))] + [list(map(str, r)) for r in rows], minwidth)


def listing(fmt: str, rows: list[Row], headers: dict[str, str], default: str) -> str:
    """Render a listing with ``--format`` ``fmt`` (docker's formatter.Context). ``headers`` maps
    column names to titles (``{"RunningFor": "CREATED"}``; a method's title is a function of its
    arguments: ``{{.Label "tier"}}`` -> ``tier``); ``default`` is the verb's table format."""
    from .gotemplate import Row, Template
    is_table = fmt.startswith("table")
    text = fmt[len("table"):] if is_table else ("{{json .}}" if fmt.strip() == "json" else fmt)
    text = text.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    if is_table and not text:
        text = default
    tmpl = Template(text)
    out = [tmpl.execute(r) for r in rows]
    if not is_table:
        return "".join(line + "\n" for line in out)
    lines = [tmpl.execute(Row(headers))] + out
    return aligned([line.split("\t") for line in "\n".join(lines).split("\n")]) + "\n"


def objects(fmt: str, items: list) -> str:
    """``inspect -f``, ``version -f``, ``info -f``: the template on each object, one line each."""
    from .gotemplate import Template
    tmpl = Template(fmt)
    return "".join(tmpl.execute(o) + "\n" for o in items)


def print_inspected(items: list, fmt: str | None) -> None:
    """``inspect``'s output: a template per object with ``-f``, else the JSON array (as docker)."""
    if fmt:
        sys.stdout.write(objects(fmt, items))
    else:
        print(json.dumps(items, indent=4))

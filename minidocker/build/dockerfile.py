"""The Dockerfile front end: text -> instructions, and Docker's variable substitution.

What this teaches
-----------------
A Dockerfile is line-oriented (Dockerfile reference, "Format"): parser directives
(``# syntax=``, ``# escape=``) only at the very top, comment lines dropped wherever they are
(also inside a continuation), a line ending in the escape character continues on the next
one, and each logical line is ``INSTRUCTION [--flag=value...] arguments``. Arguments come in
two forms: JSON (exec) form ``["a", "b"]`` and shell form (a string, run by the SHELL).

Variables (``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR:+alt}``, ``-``/``+``/``?``
variants) are replaced by the builder, not the parser, and only in the instructions the
reference lists (ADD COPY ENV EXPOSE FROM LABEL STOPSIGNAL USER VOLUME WORKDIR, ONBUILD's
payload when it runs, and ARG defaults); each instruction sees the ENV/ARG values defined
*before* it. :func:`expand` follows moby's ``shell.Lex``: single quotes are literal, double
quotes group, the escape character quotes the next character, and the quotes are removed.

Why not ``dockerfile-parse`` (PyPI)? It was evaluated: it is a Dockerfile *editor* for
OpenShift's build system. It keeps line positions and joins continuations, but it substitutes
with the final values of ENV/ARG (not the value in scope at each line), does not implement the
``:+``/``?`` forms, knows no flags (``--from``, ``--chown``) and validates nothing, so errors
would lack Docker's wording and line numbers. What the builder needs is ~250 lines and follows
the reference directly, so it is written here.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

INSTRUCTIONS = ("ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
                "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME",
                "WORKDIR")
# Instructions whose arguments the builder expands ($VAR) before use.
EXPANDS = {"ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME",
           "WORKDIR", "ARG"}
# Flags each instruction accepts (moby's BFlags): anything else is an error.
FLAGS = {"FROM": {"platform"}, "COPY": {"from", "chown", "chmod", "link", "parents", "exclude"},
         "ADD": {"chown", "chmod", "checksum", "keep-git-dir", "link", "exclude"},
         "RUN": {"mount", "network", "security"},
         "HEALTHCHECK": {"interval", "timeout", "start-period", "start-interval", "retries"}}
DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")


class DockerfileError(ValueError):
    """A syntax error; ``line`` is 1-based (0 when not tied to a line)."""

    def __init__(self, message: str, line: int = 0):
        super().__init__(f"Dockerfile parse error on line {line}: {message}" if line else message)
        self.line = line


@dataclass
class Instruction:
    cmd: str                       # upper case: "RUN"
    args: str                      # everything after the flags, continuations joined
    line: int                      # where it starts
    flags: dict = field(default_factory=dict)
    original: str = ""             # the logical line as written (for the cache key and history)

    def json_form(self) -> list[str] | None:
        """The exec form's list if the arguments are a JSON array of strings, else None."""
        return json_list(self.args)

    def __str__(self) -> str:
        return self.original


@dataclass
class Dockerfile:
    instructions: list[Instruction]
    directives: dict
    escape: str = "\\"


def json_list(text: str) -> list[str] | None:
    text = text.strip()
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _directives(lines: list[str]) -> tuple[dict, int]:
    """Parser directives: ``# key=value`` lines at the very top; any other line ends them."""
    found: dict = {}
    for n, raw in enumerate(lines):
        m = DIRECTIVE.match(raw.strip())
        if not m:
            return found, n
        key = m.group(1).lower()
        if key in found:
            raise DockerfileError(f"only one {key} parser directive can be used", n + 1)
        found[key] = m.group(2)
    return found, len(lines)


def parse(text: str | bytes) -> Dockerfile:
    """Parse a Dockerfile; raise :class:`DockerfileError` naming the line on bad input."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = text.lstrip("\ufeff")
    lines = text.splitlines()
    directives, _ = _directives(lines)
    escape = directives.get("escape", "\\")
    if escape not in ("\\", "`"):
        raise DockerfileError(f"invalid escape token '{escape}' does not match ` or \\", 1)
    out: list[Instruction] = []
    logical, start, raw_lines = "", 0, []
    for n, raw in enumerate(lines, 1):
        stripped = raw.strip()
        if stripped.startswith("#"):
            continue                               # comments (and directives) vanish, even mid-line-group
        if not stripped and not logical:
            continue
        if not logical:
            start = n
        body = raw.rstrip()
        if body.endswith(escape) and not _escaped(body, escape):
            logical += body[:-1]
            raw_lines.append(raw)
            continue
        if not stripped:                           # an empty line inside a continuation: skipped
            continue
        logical += raw
        raw_lines.append(raw)
        out.append(_instruction(logical, start))
        logical, raw_lines = "", []
    if logical.strip():
        out.append(_instruction(logical, start))
    if not out:
        raise DockerfileError("the Dockerfile (Dockerfile) cannot be empty")
    return Dockerfile(out, directives, escape)


def _escaped(body: str, escape: str) -> bool:
    """``\\\\`` at the end is an escaped escape, not a continuation."""
    count = len(body) - len(body.rstrip(escape))
    return count % 2 == 0


def _instruction(logical: str, line: int) -> Instruction:
    text = logical.strip()
    word, _, rest = text.partition(" ")
    if "\t" in word:
        word, _, more = word.partition("\t")
        rest = more + " " + rest
    cmd = word.upper()
    if cmd not in INSTRUCTIONS:
        raise DockerfileError(f"unknown instruction: {word}", line)
    rest = rest.strip()
    flags: dict = {}
    allowed = FLAGS.get(cmd, set())
    while rest.startswith("--") and cmd in FLAGS:
        token, _, after = rest.partition(" ")
        name, eq, value = token[2:].partition("=")
        if name not in allowed:
            raise DockerfileError(f"unknown flag: --{name}", line)
        if not eq and name not in ("link", "parents", "keep-git-dir"):
            raise DockerfileError(f"missing a value on flag: --{name}", line)
        if name in flags and name not in ("mount", "exclude"):
            raise DockerfileError(f"duplicate flag specified: --{name}", line)
        flags.setdefault(name, []).append(value if eq else "true")
        rest = after.strip()
    flags = {k: v if k in ("mount", "exclude") else v[0] for k, v in flags.items()}
    if not rest and cmd not in ("HEALTHCHECK",):
        raise DockerfileError(f"{cmd} requires at least one argument", line)
    return Instruction(cmd, rest, line, flags, text)


# ---- variable substitution (moby's shell.Lex) --------------------------------------------------

class ExpandError(ValueError):
    pass


def expand(word: str, env: dict, escape: str = "\\") -> str:
    """One word, quotes removed, variables replaced (WORKDIR, USER, FROM, ...)."""
    return "".join(w for w in _lex(word, env, escape, split=False)) if word else ""


def expand_words(text: str, env: dict, escape: str = "\\") -> list[str]:
    """Whitespace-separated words (quotes group), each expanded (EXPOSE, VOLUME, COPY, ...)."""
    return _lex(text, env, escape, split=True)


def _lex(text: str, env: dict, escape: str, split: bool) -> list[str]:
    words: list[str] = []
    cur, have = [], False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if split and c in " \t\n":
            if have:
                words.append("".join(cur))
                cur, have = [], False
            i += 1
            continue
        have = True
        if c == escape:
            if i + 1 < n:
                cur.append(text[i + 1])
            i += 2
        elif c == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise ExpandError(f"unexpected end of statement while looking for matching single-quote: {text}")
            cur.append(text[i + 1:end])
            i = end + 1
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                if text[i] == escape and i + 1 < n and text[i + 1] in ('"', "$", escape):
                    cur.append(text[i + 1])
                    i += 2
                elif text[i] == "$":
                    value, i = _variable(text, i, env, escape)
                    cur.append(value)
                else:
                    cur.append(text[i])
                    i += 1
            if i >= n:
                raise ExpandError(f"unexpected end of statement while looking for matching double-quote: {text}")
            i += 1
        elif c == "$":
            value, i = _variable(text, i, env, escape)
            cur.append(value)
        else:
            cur.append(c)
            i += 1
    if have:
        words.append("".join(cur))
    return words


NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]")


def _variable(text: str, i: int, env: dict, escape: str) -> tuple[str, int]:
    """``text[i] == '$'``: the value and the index after the reference."""
    if i + 1 >= len(text):
        return "$", i + 1
    if text[i + 1] != "{":
        m = NAME.match(text, i + 1)
        if not m:
            return "$", i + 1
        return env.get(m.group(0), ""), m.end()
    m = NAME.match(text, i + 2)
    if not m:
        raise ExpandError(f"missing ':' in substitution: {text}")
    name, j = m.group(0), m.end()
    if j < len(text) and text[j] == "}":
        return env.get(name, ""), j + 1
    op = text[j:j + 2] if text[j:j + 1] == ":" else text[j:j + 1]
    if op not in (":-", ":+", ":?", "-", "+", "?"):
        raise ExpandError(f"unsupported modifier ({text[j:j + 1]}) in substitution: {text}")
    j += len(op)
    depth, k, word = 1, j, []
    while k < len(text):           # the word may itself hold ${...}
        if text[k] == escape and k + 1 < len(text):
            word.append(text[k:k + 2])
            k += 2
            continue
        if text.startswith("${", k):
            depth += 1
        elif text[k] == "}":
            depth -= 1
            if depth == 0:
                break
        word.append(text[k])
        k += 1
    if k >= len(text):
        raise ExpandError(f"missing '}}' in substitution: {text}")
    inner = expand("".join(word), env, escape)
    value = env.get(name)
    unset_or_empty = value is None or (op.startswith(":") and value == "")
    kind = op[-1]
    if kind == "-":
        return (inner if unset_or_empty else value), k + 1
    if kind == "+":
        return ("" if unset_or_empty else inner), k + 1
    if unset_or_empty:
        raise ExpandError(f"{name}: {inner or 'is not allowed to be unset'}")
    return value, k + 1


def key_values(text: str, env: dict, escape: str, what: str, line: int) -> list[tuple[str, str]]:
    """ENV/LABEL/ARG arguments: ``k=v k2="v 2"`` or the legacy ``ENV k some value``."""
    words = _raw_words(text, escape)
    if words and "=" not in words[0]:
        if what == "ARG":
            if len(words) != 1:
                raise DockerfileError("ARG requires exactly one argument", line)
            return [(expand(words[0], env, escape), None)]
        if len(words) < 2:
            raise DockerfileError(f"{what} must have two arguments", line)
        rest = text.strip()[len(words[0]):].strip()
        return [(words[0], expand(rest, env, escape))]
    out = []
    for w in words:
        k, eq, v = w.partition("=")
        if not eq or not k:
            raise DockerfileError(f"{what} names can not be blank" if not k else
                                  f"Syntax error - can't find = in \"{w}\". Must be of the form: name=value",
                                  line)
        out.append((expand(k, env, escape), expand(v, env, escape)))
    return out


def _raw_words(text: str, escape: str) -> list[str]:
    """Split on unquoted whitespace, keeping quotes and escapes for a later :func:`expand`."""
    words, cur, quote, i = [], "", None, 0
    while i < len(text):
        c = text[i]
        if c == escape and i + 1 < len(text) and quote != "'":
            cur += text[i:i + 2]
            i += 2
            continue
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c in " \t\n":
            if cur:
                words.append(cur)
            cur = ""
            i += 1
            continue
        cur += c
        i += 1
    if quote:
        raise ExpandError(f"unexpected end of statement while looking for matching {quote}")
    if cur:
        words.append(cur)
    return words

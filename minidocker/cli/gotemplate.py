"""``--format``: the part of Go's text/template that docker users write, and a clear error for the rest.

What this teaches
-----------------
``docker ps --format '{{.Names}}'`` and ``docker inspect -f '{{index .Config.Labels "k"}}'`` are Go
templates (https://pkg.go.dev/text/template), executed by the docker CLI on the JSON the daemon sent.
A template is text with *actions* in ``{{ }}``; an action is a *pipeline* of commands separated by
``|``, each command's result passed as the last argument of the next. This module is a small
interpreter for them, in three steps a student can follow:

1. **lex** (:func:`_split`): cut the text into literal text and actions, honouring ``{{-``/``-}}``
   (trim the white space next to them) and ``{{/* comments */}}``;
2. **parse** (:class:`_Parser`): actions become a tree — ``if``/``else if``/``else``, ``range``
   (with ``$i, $e :=``), ``with``, ``end``, variables (``$x := ...``), pipelines;
3. **execute** (:meth:`Template.execute`): walk the tree with ``.`` (dot) set to the data, ``$`` to the
   root, printing values as Go's fmt does (``[a b]`` for a list, ``map[k:v]`` for a map, ``<nil>``:
   gofmt.py, which also is ``printf``).

Supported: fields (``.A.B``, ``$x.A``, ``.``), literals (strings ``"…"``/`` `…` ``, numbers, ``true``,
``false``, ``nil``), ``if``/``else if``/``else``, ``range`` (lists, maps in key order, integers;
``else``, ``break``, ``continue``), ``with``, variables, ``( … )`` sub-pipelines, Go's functions ``and or
not len index slice eq ne lt le gt ge print printf println`` and docker's ``json split join title lower
upper pad truncate`` (cli/templates/templates.go). Anything else — ``define``/``template``/``block``,
``call``, ``html``/``js``/``urlquery``, a ``printf`` verb we do not format — raises
:class:`TemplateError` naming it: an error is better than output that silently differs from docker's.

Why hand-written: the CLI imports only the standard library (start-up time, see cli/main.py), and
the Python template engines (Jinja2, Mako, string.Template) speak other languages; docker users'
templates are Go's. Errors read like Go's (``template: :1: function "bogus" not defined``,
``map has no entry for key "X"``).
"""
from __future__ import annotations

import json
import re

from .gofmt import FmtError, go_float, go_quote, go_sprint, go_sprintf, go_string, go_type  # noqa: F401

__all__ = ["TemplateError", "Template", "Row", "render", "go_string"]


class TemplateError(ValueError):
    """A template that cannot be parsed (``phase == "parse"``) or executed (``"execute"``)."""

    def __init__(self, message: str, phase: str = "parse"):
        super().__init__(message)
        self.phase = phase


class Row(dict):
    """A row of a listing (``ps``, ``images``, ``stats``...): docker's formatter "context". Values that
    are callables are methods (``{{.Label "com.example"}}``); ``{{json .}}`` leaves them out and
    escapes <, >, & as docker's MarshalJSON of a context does."""


# ---- 1. lexing ----------------------------------------------------------------------------------
_PATTERNS: dict[str, re.Pattern] = {}


def _pattern(name: str) -> re.Pattern:
    """Compiled on first use: every ``minidocker`` command imports this module, few use a template."""
    if name not in _PATTERNS:
        _PATTERNS[name] = re.compile(_SOURCES[name], re.S | re.X if name == "token" else re.S)
    return _PATTERNS[name]


def _split(text: str) -> list[tuple[str, str, int]]:
    """``"a {{.B}} c"`` -> [("text", "a ", 0), ("action", ".B", 4), ("text", " c", 0)]."""
    out: list[tuple[str, str, int]] = []
    pos, trim_next = 0, False
    while True:
        start = text.find("{{", pos)
        if start < 0:
            rest = text[pos:]
            out.append(("text", rest.lstrip() if trim_next else rest, 0))
            return out
        m = _pattern("action").match(text, start)
        if not m:
            raise TemplateError(f"template: :{text.count(chr(10), 0, start) + 1}: unclosed action")
        lit = text[pos:start]
        if trim_next:
            lit = lit.lstrip()
        if m.group(1):
            lit = lit.rstrip()
        out.append(("text", lit, 0))
        body = m.group(2)
        if not (body.strip().startswith("/*") and body.strip().endswith("*/")):
            out.append(("action", body, text.count("\n", 0, start) + 1))
        trim_next, pos = bool(m.group(3)), m.end()


_TOKEN = r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<char>'(?:[^'\\]|\\.)+')
  | (?P<declare>:=)
  | (?P<assign>=)
  | (?P<number>[-+]?(?:0[xX][0-9a-fA-F_]+|(?:\d[\d_]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?))
  | (?P<field>(?:\.[A-Za-z_]\w*)+)
  | (?P<dot>\.)
  | (?P<var>\$\w*(?:\.[A-Za-z_]\w*)*)
  | (?P<ident>[A-Za-z_]\w*)
  | (?P<punct>[()|,])
"""


def _tokens(body: str, line: int) -> list[tuple[str, str]]:
    toks, pos = [], 0
    while pos < len(body):
        m = _pattern("token").match(body, pos)
        if not m:
            raise TemplateError(f"template: :{line}: unexpected {body[pos:pos + 10]!r} in command")
        kind = m.lastgroup
        if kind != "space":
            toks.append((kind, m.group()))
        pos = m.end()
    return toks


# ---- 2. parsing ---------------------------------------------------------------------------------
# Nodes are tuples: ("text", s) ("action", pipe) ("if", [(pipe, body)...], else_body)
# ("range", pipe, body, else_body) ("with", [(pipe, body)...], else_body) ("break",) ("continue",)
# A pipe is (declared_vars, is_declaration, [command...]); a command is [argument...]; an argument is
# ("field", [names]) ("var", name, [names]) ("dot",) ("lit", value) ("ident", name) ("pipe", pipe).
_UNSUPPORTED = {"define": "{{define}}", "template": "{{template}}", "block": "{{block}}",
                "call": "the function call", "html": "the function html", "js": "the function js",
                "urlquery": "the function urlquery"}
_KEYWORDS = {"if", "else", "end", "range", "with", "break", "continue"}


class _Parser:
    def __init__(self, text: str):
        self.items = _split(text)
        self.i = 0

    def parse(self) -> list:
        body, stop = self.block(top=True)
        return body

    def block(self, top=False, in_range=False):
        """Nodes up to an {{else}}/{{end}} (returned as ``stop``)."""
        nodes = []
        while self.i < len(self.items):
            kind, body, line = self.items[self.i]
            self.i += 1
            if kind == "text":
                if body:
                    nodes.append(("text", body))
                continue
            toks = _tokens(body, line)
            if not toks:
                raise TemplateError(f"template: :{line}: missing value for command")
            first = toks[0]
            word = first[1] if first[0] == "ident" else None
            if word in _UNSUPPORTED:
                raise TemplateError(f"template: :{line}: {_UNSUPPORTED[word]} is not supported by "
                                    "minidocker's --format")
            if word in ("end", "else"):
                if top:
                    raise TemplateError(f"template: :{line}: unexpected {{{{{word}}}}}")
                return nodes, (word, toks[1:], line)
            if word in ("if", "with"):
                nodes.append(self.conditional(word, toks[1:], line, in_range))
            elif word == "range":
                pipe = self.pipeline(toks[1:], line, decl_ok=True)
                inner, stop = self.block(in_range=True)
                other = []
                if stop[0] == "else":
                    if stop[1]:
                        raise TemplateError(f"template: :{stop[2]}: unexpected {{{{else ...}}}} in range")
                    other, stop = self.block(in_range=in_range)
                self.expect_end(stop, line)
                nodes.append(("range", pipe, inner, other))
            elif word in ("break", "continue"):
                if not in_range:
                    raise TemplateError(f"template: :{line}: {{{{{word}}}}} outside {{{{range}}}}")
                nodes.append((word,))
            else:
                nodes.append(("action", self.pipeline(toks, line, decl_ok=True)))
        if not top:
            raise TemplateError("template: :1: unexpected EOF")
        return nodes, None

    def conditional(self, word, toks, line, in_range):
        branches, other = [], []
        while True:
            pipe = self.pipeline(toks, line, decl_ok=True)
            inner, stop = self.block(in_range=in_range)
            branches.append((pipe, inner))
            if stop[0] == "else" and stop[1] and stop[1][0] == ("ident", word):  # {{else if ...}}
                toks, line = stop[1][1:], stop[2]
                continue
            if stop[0] == "else":
                if stop[1]:
                    raise TemplateError(f"template: :{stop[2]}: unexpected {{{{else ...}}}}")
                other, stop = self.block(in_range=in_range)
            self.expect_end(stop, line)
            return (word, branches, other)

    @staticmethod
    def expect_end(stop, line):
        if stop is None or stop[0] != "end":
            raise TemplateError(f"template: :{line}: expected {{{{end}}}}")
        if stop[1]:
            raise TemplateError(f"template: :{stop[2]}: unexpected {stop[1][0][1]!r} in end")

    def pipeline(self, toks, line, decl_ok=False):
        decl, declares = [], True
        # "$x :=", "$i, $e :=", "$x =" at the start
        for n in (1, 3):
            if len(toks) > n and toks[n][0] in ("declare", "assign") and all(
                    t[0] == "var" and "." not in t[1] for t in toks[0:n:2]) and (n == 1 or toks[1] == ("punct", ",")):
                if not decl_ok:
                    raise TemplateError(f"template: :{line}: variable declaration not allowed here")
                decl = [t[1] for t in toks[0:n:2]]
                declares = toks[n][0] == "declare"
                toks = toks[n + 1:]
                break
        commands, args, depth, sub = [], [], 0, []
        for t in toks + [("punct", "|")]:
            if depth:
                if t == ("punct", "("):
                    depth += 1
                elif t == ("punct", ")"):
                    depth -= 1
                    if depth == 0:
                        args.append(("pipe", self.pipeline(sub, line)))
                        sub = []
                        continue
                sub.append(t)
                continue
            if t == ("punct", "("):
                depth = 1
            elif t == ("punct", ")"):
                raise TemplateError(f"template: :{line}: unexpected right paren")
            elif t == ("punct", "|"):
                if not args:
                    raise TemplateError(f"template: :{line}: missing value for command")
                commands.append(args)
                args = []
            elif t == ("punct", ","):
                raise TemplateError(f"template: :{line}: unexpected \",\" in command")
            else:
                args.append(self.argument(t, line))
        if depth:
            raise TemplateError(f"template: :{line}: unclosed left paren")
        if len(commands) > 1:
            for cmd in commands[1:]:
                if cmd[0][0] not in ("ident", "field", "var"):
                    raise TemplateError(f"template: :{line}: non executable command in pipeline stage 2")
        return (decl, declares, commands)

    @staticmethod
    def argument(tok, line):
        kind, s = tok
        if kind == "field":
            return ("field", s.split(".")[1:])
        if kind == "dot":
            return ("dot",)
        if kind == "var":
            name, *path = s.split(".")
            return ("var", name, path)
        if kind == "string":
            try:
                return ("lit", json.loads(s))
            except ValueError:
                return ("lit", s[1:-1].encode().decode("unicode_escape"))
        if kind == "raw":
            return ("lit", s[1:-1])
        if kind == "char":
            return ("lit", ord(s[1:-1].encode().decode("unicode_escape")))
        if kind == "number":
            t = s.replace("_", "")
            try:
                return ("lit", int(t, 0))
            except ValueError:
                return ("lit", float(t))
        if kind == "ident":
            if s in ("true", "false"):
                return ("lit", s == "true")
            if s == "nil":
                return ("lit", None)
            if s in _KEYWORDS:
                raise TemplateError(f"template: :{line}: unexpected <{s}> in command")
            if s in _UNSUPPORTED:
                raise TemplateError(f"template: :{line}: {_UNSUPPORTED[s]} is not supported by "
                                    "minidocker's --format")
            if s not in FUNCS:
                raise TemplateError(f"template: :{line}: function \"{s}\" not defined")
            return ("ident", s)
        raise TemplateError(f"template: :{line}: unexpected {s!r} in command")


# ---- truth ---------------------------------------------------------------------------------------
def truth(v) -> bool:
    """Go's template truth: false, 0, nil and empty strings, lists and maps are false."""
    if v is None or v is False:
        return False
    if isinstance(v, (int, float, str, list, tuple, dict)):
        return bool(v)
    return True


_SOURCES = {"action": r"\{\{(-\s)?(.*?)(\s-)?\}\}", "token": _TOKEN}


# ---- functions -------------------------------------------------------------------------------------
# The API's JSON mixes Go structs (fields in declaration order) and Go maps, which encoding/json
# writes with sorted keys. Without Go's types, the fields that hold maps are known by name.
MAP_FIELDS = frozenset({"Labels", "ExposedPorts", "Volumes", "Networks", "Ports", "Options", "DriverOpts",
                        "Sysctls", "StorageOpt", "Tmpfs", "Annotations", "Attributes", "Data",
                        "IndexConfigs"})


# ... and the fields that hold slices: a null one prints as ``[]`` (Go's nil slice), not ``<nil>``.
SLICE_FIELDS = frozenset({"Cmd", "Entrypoint", "Env", "Binds", "Mounts", "RepoTags", "RepoDigests", "Args",
                          "ExecIDs", "Dns", "DnsOptions", "DnsSearch", "ExtraHosts", "CapAdd", "CapDrop",
                          "Links", "SecurityOpt", "Devices", "OnBuild", "Shell", "GroupAdd", "Layers",
                          "VolumesFrom", "Warnings"})


class NilSlice(list):
    """A null slice field: prints ``[]``, is ``null`` in JSON, empty everywhere else."""


class NilMap(dict):
    """A null map field: prints ``map[]``, is ``null`` in JSON, empty everywhere else."""


def _go_order(v, is_map: bool = False):
    if isinstance(v, (NilSlice, NilMap)):
        return None
    if isinstance(v, dict):
        keys = sorted(v, key=str) if is_map or isinstance(v, Row) else list(v)
        return {k: _go_order(v[k], k in MAP_FIELDS) for k in keys if not callable(v[k])}
    if isinstance(v, (list, tuple)):
        return [_go_order(x) for x in v]
    return v


def _go_json(v, escape_html: bool = False, is_map: bool = False) -> str:
    if isinstance(v, Row):
        escape_html = True  # a context marshals as a sorted map, HTML-escaped
    s = json.dumps(_go_order(v, is_map), ensure_ascii=False, separators=(",", ":"))
    s = s.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    if escape_html:
        s = s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return s


def _title(s: str) -> str:
    """Go's strings.Title: upper-case letters that follow a separator (not letter/digit/_)."""
    out, prev_sep = [], True
    for ch in s:
        out.append(ch.upper() if prev_sep else ch)
        prev_sep = not (ch.isalnum() or ch == "_")
    return "".join(out)


def _index(v, *keys):
    for k in keys:
        if isinstance(v, dict):
            v = v.get(k, "")  # a missing key is the zero value (docker's typed maps give "")
        elif isinstance(v, (list, tuple, str)):
            if not isinstance(k, int) or isinstance(k, bool):
                raise TemplateError(f"error calling index: cannot index slice/array with type {go_type(k)}",
                                    "execute")
            if not 0 <= k < len(v):
                raise TemplateError(f"error calling index: index out of range: {k}", "execute")
            v = v[k] if not isinstance(v, str) else ord(v[k])
        elif v is None and isinstance(k, str):
            v = ""  # a null map (Labels: null): docker's typed nil map indexes to the zero value
        elif v is None:
            raise TemplateError("error calling index: index of untyped nil", "execute")
        else:
            raise TemplateError(f"error calling index: can't index item of type {go_type(v)}", "execute")
    return v


def _slice(v, *idx):
    if not isinstance(v, (list, tuple, str)):
        raise TemplateError(f"error calling slice: can't slice item of type {go_type(v)}", "execute")
    if len(idx) > 2:
        raise TemplateError("error calling slice: three-index slices are not supported", "execute")
    lo, hi = (list(idx) + [0, len(v)][len(idx):])[:2] if idx else (0, len(v))
    if not 0 <= lo <= hi <= len(v):
        raise TemplateError(f"error calling slice: index out of range: {hi}", "execute")
    return v[lo:hi]


def _len(v):
    if isinstance(v, (str, list, tuple, dict)):
        return len(v.encode()) if isinstance(v, str) else len(v)
    raise TemplateError(f"error calling len: len of type {go_type(v)}", "execute")


def _kind(v) -> str:
    return {"bool": "bool", "int": "number", "float64": "number", "string": "string",
            "<nil>": "nil"}.get(go_type(v), "other")


def _comparable(a, b, op):
    ka, kb = _kind(a), _kind(b)
    if "other" in (ka, kb):
        raise TemplateError(f"error calling {op}: non-comparable type", "execute")
    if "nil" in (ka, kb) or (op not in ("eq", "ne") and ka == "bool"):
        raise TemplateError(f"error calling {op}: invalid type for comparison", "execute")
    if ka != kb:
        raise TemplateError(f"error calling {op}: incompatible types for comparison", "execute")


def _eq(a, *others):
    if not others:
        raise TemplateError("error calling eq: missing argument for comparison", "execute")
    for b in others:
        _comparable(a, b, "eq")
        if a == b:
            return True
    return False


def _ordered(op):
    def cmp(a, b):
        _comparable(a, b, op)
        return {"lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[op]
    return cmp


def _join(v, sep: str) -> str:
    if not isinstance(v, (list, tuple)):
        raise TemplateError(f"error calling join: wrong type for value; expected []string; got {go_type(v)}",
                            "execute")
    return sep.join(go_string(x) for x in v)


def _str_arg(name, fn):
    def call(s, *rest):
        if not isinstance(s, str):  # docker's functions take a string: no silent conversion
            raise TemplateError(f"error calling {name}: wrong type for value; expected string; got "
                                f"{go_type(s)}", "execute")
        return fn(s, *rest)
    return call


FUNCS = {
    # Go's builtins (and/or are evaluated lazily by the executor)
    "and": None, "or": None,
    "not": lambda v: not truth(v), "len": _len, "index": _index, "slice": _slice,
    "eq": _eq, "ne": lambda a, b: not _eq(a, b),
    "lt": _ordered("lt"), "le": _ordered("le"), "gt": _ordered("gt"), "ge": _ordered("ge"),
    "print": go_sprint, "printf": go_sprintf,
    "println": lambda *a: " ".join(go_string(x) for x in a) + "\n",
    # docker's (cli/templates/templates.go)
    "json": lambda v: _go_json(v, is_map=isinstance(v, GoMap)), "split": _str_arg("split", lambda s, sep: s.split(sep) if sep else list(s)),
    "join": _join, "title": _str_arg("title", _title), "lower": _str_arg("lower", str.lower),
    "upper": _str_arg("upper", str.upper),
    "pad": _str_arg("pad", lambda s, before, after: " " * before + s + " " * after if s else s),
    "truncate": _str_arg("truncate", lambda s, n: s[:n]),
}


# ---- 3. executing ---------------------------------------------------------------------------------
class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class Template:
    """A parsed template: ``Template('{{.Name}}').execute({"Name": "web"}) == "web"``."""

    def __init__(self, text: str):
        self.text = text
        self.tree = _Parser(text).parse()

    def execute(self, data) -> str:
        out: list[str] = []
        try:
            self._run(self.tree, data, [{"$": data}], out)
        except TemplateError as e:
            msg = str(e)
            raise TemplateError(msg if msg.startswith("template:") else "template: :1: " + msg,
                                "execute") from None
        return "".join(out)

    # each scope is a dict of variables; blocks push one
    def _run(self, nodes, dot, scopes, out):
        for node in nodes:
            kind = node[0]
            if kind == "text":
                out.append(node[1])
            elif kind == "action":
                v = self._pipe(node[1], dot, scopes)
                if not node[1][0]:  # a declaration prints nothing
                    try:
                        out.append(go_string(v))
                    except FmtError as e:
                        raise TemplateError(str(e), "execute") from None
            elif kind in ("if", "with"):
                for pipe, body in node[1]:
                    scope = dict()
                    v = self._pipe(pipe, dot, scopes + [scope])
                    if truth(v):
                        self._run(body, v if kind == "with" else dot, scopes + [scope], out)
                        break
                else:
                    self._run(node[2], dot, scopes + [{}], out)
            elif kind == "range":
                self._range(node, dot, scopes, out)
            elif kind == "break":
                raise _Break()
            elif kind == "continue":
                raise _Continue()

    def _range(self, node, dot, scopes, out):
        _, pipe, body, other = node
        decl, _declares, commands = pipe
        v = self._pipe((None, True, commands), dot, scopes)
        if isinstance(v, dict):
            items = [(k, v[k]) for k in sorted(v, key=str) if not callable(v[k])]
        elif isinstance(v, (list, tuple)):
            items = list(enumerate(v))
        elif isinstance(v, int) and not isinstance(v, bool):
            items = [(i, i) for i in range(v)]
        elif v is None:
            items = []
        else:
            raise TemplateError(f"range can't iterate over {go_string(v)}", "execute")
        if not items:
            self._run(other, dot, scopes + [{}], out)
            return
        for key, elem in items:
            scope = {}
            if len(decl or []) == 1:
                scope[decl[0]] = elem
            elif len(decl or []) == 2:
                scope[decl[0]], scope[decl[1]] = key, elem
            try:
                self._run(body, elem, scopes + [scope], out)
            except _Break:
                break
            except _Continue:
                continue

    def _pipe(self, pipe, dot, scopes):
        decl, declares, commands = pipe
        value, first = None, True
        for cmd in commands:
            value = self._command(cmd, dot, scopes, None if first else [value])
            first = False
        if decl:
            if declares:
                scopes[-1][decl[0]] = value
            else:
                for scope in reversed(scopes):
                    if decl[0] in scope:
                        scope[decl[0]] = value
                        break
                else:
                    raise TemplateError(f"undefined variable: {decl[0]}", "execute")
        return value

    def _command(self, cmd, dot, scopes, piped):
        head, args = cmd[0], cmd[1:]
        if head[0] == "ident":
            name = head[1]
            if name in ("and", "or"):
                vals = [self._arg(a, dot, scopes) for a in args] + (piped or [])
                if not vals:
                    raise TemplateError(f"wrong number of args for {name}: want at least 1 got 0", "execute")
                for v in vals:
                    if truth(v) != (name == "and"):
                        return v
                return vals[-1]
            vals = [self._arg(a, dot, scopes) for a in args] + (piped or [])
            try:
                return FUNCS[name](*vals)
            except TemplateError:
                raise
            except FmtError as e:
                raise TemplateError(f"error calling {name}: {e}", "execute") from None
            except TypeError:
                raise TemplateError(f"wrong number or type of args for {name}", "execute") from None
        value = self._arg(head, dot, scopes)
        if callable(value):  # a method of a listing row: {{.Label "k"}}
            try:
                return value(*[self._arg(a, dot, scopes) for a in args], *(piped or []))
            except TypeError:
                raise TemplateError("wrong number of args for a method", "execute") from None
        if args or piped:
            what = "." + ".".join(head[1]) if head[0] == "field" else "value"
            raise TemplateError(f"can't give argument to non-function {what}", "execute")
        return value

    def _arg(self, arg, dot, scopes):
        kind = arg[0]
        if kind == "lit":
            return arg[1]
        if kind == "dot":
            return dot
        if kind == "field":
            return _fields(dot, arg[1])
        if kind == "var":
            for scope in reversed(scopes):
                if arg[1] in scope:
                    return _fields(scope[arg[1]], arg[2])
            raise TemplateError(f"undefined variable: {arg[1]}")
        if kind == "pipe":
            return self._pipe(arg[1], dot, scopes)
        if kind == "ident":
            return self._command([arg], dot, scopes, None)
        raise TemplateError(f"cannot evaluate {arg!r}", "execute")


class GoMap(dict):
    """A dict known to be a Go map (it came from a field in MAP_FIELDS): ``json`` sorts its keys."""


def _fields(v, names):
    for i, name in enumerate(names):
        where = "." + ".".join(names[:i + 1])
        if isinstance(v, dict):
            if name not in v and not isinstance(v, Row) and name in MAP_FIELDS | SLICE_FIELDS:
                v = None  # docker decodes into typed structs: an absent slice or map field is nil
            elif name not in v:
                raise TemplateError(f'executing "" at <{where}>: map has no entry for key "{name}"', "execute")
            else:
                v = v[name]
            if name in MAP_FIELDS and isinstance(v, dict) and not isinstance(v, Row):
                v = GoMap(v)
            elif v is None and name in MAP_FIELDS:
                v = NilMap()
            elif v is None and name in SLICE_FIELDS:
                v = NilSlice()
        elif v is None:
            raise TemplateError(f'executing "" at <{where}>: nil pointer evaluating {name}', "execute")
        else:
            raise TemplateError(f'executing "" at <{where}>: can\'t evaluate field {name} in type '
                                f"{go_type(v)}", "execute")
    return v


def render(template: str, data) -> str:
    """Parse and execute ``template`` on ``data`` (raises :class:`TemplateError`)."""
    return Template(template).execute(data)

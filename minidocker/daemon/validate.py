"""Every request checked once, before its handler runs: query parameters and JSON bodies, as dockerd.

What this teaches
-----------------
An API server trusts nothing it is sent. dockerd gets that for free from Go: ``encoding/json`` decodes a
body into typed structs and refuses what does not fit (``{"Hostname": 5}``), ``strconv.Atoi`` refuses
``?t=abc``; the error becomes a 400 ``{"message": "invalid JSON: json: cannot unmarshal ..."}``. A
Python daemon gets dicts of anything, and a handler that meets ``5`` where it expected a string fails
with a 500 -- or worse, stores it: a commit with ``{"Labels": [null]}`` once wrote an image config that
broke ``docker images`` for everyone.

So the types come from the API's own description (``api_types.py``, generated from the v1.50 swagger
by ``validate_gen.py``), and this module applies *Go's decoding rules* to them, because those are the
rules the real clients were written against:

* keys match case-insensitively (an exact match is not required: ``detachKeys`` fills ``DetachKeys``);
  the body the handler sees uses the API's spelling;
* ``null`` is accepted for every field (Go leaves the field at its zero value: the docker CLI sends
  ``"Env": null``, ``"Entrypoint": null``); a ``null`` list or map element becomes the zero value;
* ``Cmd``/``Entrypoint``/``Shell`` are a string or a list of strings (``strslice.StrSlice``);
* integers must be written as integers (``1.5`` and ``1e3`` are not an ``int64``) and fit their Go type
  (``uint16``, ``int64``...); ``1e400`` overflows every number; a fixed ``[2]uint`` array takes at most
  two elements (Go drops the rest and zero-fills the missing);
* unknown keys are ignored (and passed on untouched); objects nested deeper than Go's limit (10000)
  are refused -- Python's parser would otherwise die with a RecursionError.

Plus what a Python daemon needs and Go's type system gives dockerd implicitly: no NUL byte in a
string (a path with NUL is a ValueError in every ``os`` call) and no unpaired UTF-16 surrogate (Go
replaces it with U+FFFD; so do we). And a few checks of meaning dockerd makes at create time
(``Runtime``, ``LogConfig.Type``).

``Guarded`` applies it in ONE place: it wraps the route table, so every handler registered by any
route module is checked before it runs. Cost (measured on the 2-core test machine): nothing at daemon
start (start-to-first-ping unchanged within noise, RSS +0.1 MB); ``api_types`` loads at the first request
with a query or a body (about 1 ms from its .pyc, +0.3 MB); checking a ``docker run`` body costs about
as much again as ``json.loads`` of it. ``import jsonschema`` alone would cost 1.6-4.8 s and 42 MB.
"""
from __future__ import annotations

import json
import re

# Go's integer types and their ranges (encoding/json refuses a number outside them).
GO_INT_RANGES = {"int": (-2**63, 2**63 - 1), "int64": (-2**63, 2**63 - 1), "int32": (-2**31, 2**31 - 1),
                 "uint": (0, 2**64 - 1), "uint64": (0, 2**64 - 1), "uint32": (0, 2**32 - 1),
                 "uint16": (0, 2**16 - 1), "uint8": (0, 2**8 - 1)}

# HostConfig.Runtime values that name runc (or minidocker's own runtime, which is runc-compatible).
RUNC_COMPATIBLE = {"runc", "io.containerd.runc.v2", "minidocker"}
# Log drivers: json-file is what minidocker writes; local is read back the same way; none keeps nothing.
LOG_DRIVERS = {"json-file", "local", "none"}
# The options dockerd's json-file and local drivers accept (moby daemon/logger/jsonfilelog, local).
LOG_OPTS = {"max-file", "max-size", "compress", "env", "env-regex", "labels", "labels-regex", "tag"}

_ATOI = re.compile(r"[+-]?[0-9]+")
_SURROGATE = re.compile("[\ud800-\udfff]")


class Invalid(ValueError):
    """The request does not fit the API: answered with 400 and this message."""


class _Num(float):
    """A JSON number written with a fraction or exponent, keeping its text for Go's messages."""
    text = ""


def _num(text: str) -> _Num:
    n = _Num(text)
    n.text = text
    return n


def _no_constant(name: str):
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")


def parse_json(data: bytes | str):
    """Parse a request body as Go's decoder would accept it (``None`` for an empty body)."""
    if not (data.strip() if isinstance(data, (bytes, str)) else data):
        return None
    try:
        return json.loads(data, parse_float=_num, parse_constant=_no_constant)
    except RecursionError:
        raise Invalid("invalid JSON: exceeded max depth") from None
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise Invalid(f"invalid JSON: {e}") from None


# ---- the walk: one value against one node of api_types ------------------------------------------

def _kind(v) -> str:
    """How Go's errors name a JSON value."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}[type(v)]


def _numtext(v) -> str:
    return v.text if isinstance(v, _Num) else json.dumps(v)


class _Mismatch(Exception):
    """Raised deep in a walk; each struct on the way up adds its field name (no path kept otherwise)."""

    def __init__(self, value, node, numeric: bool = False, text: str | None = None):
        self.value, self.node, self.numeric, self.text, self.keys = value, node, numeric, text, []


class _Walker:
    def __init__(self, defs: dict, root: str):
        self.defs, self.root = defs, root

    def gotype(self, node) -> str:
        if isinstance(node, str):
            return {"s": "string", "b": "bool", "f": "float64", "any": "interface {}", "strslice": "string"}[node]
        tag = node[0]
        if tag == "i":
            return node[1]
        if tag == "a":
            return (f"[{node[2]}]" if node[2] else "[]") + self.gotype(node[1])
        if tag == "m":
            return "map[string]" + self.gotype(node[1])
        return node[1]  # "o" and "ref": the struct's name

    def check(self, value, node):
        """The canonical value, or Invalid in dockerd's words."""
        try:
            return self.walk(value, node)
        except _Mismatch as e:
            path = ".".join(reversed(e.keys))
            if e.text:  # not a type mismatch: a NUL byte
                raise Invalid(f"invalid {path or 'value'}: {e.text}") from None
            v = e.value
            what = _kind(v) + (" " + _numtext(v) if e.numeric and isinstance(v, (int, float)) else "")
            where = f"Go struct field {self.root}.{path}" if path else f"Go value of type {self.root}"
            raise Invalid(f"invalid JSON: json: cannot unmarshal {what} into {where} of type "
                          f"{self.gotype(e.node)}") from None

    def zero(self, node):
        if node == "s":
            return ""
        if node == "b":
            return False
        if node == "f" or node[0] == "i":
            return 0
        if node[0] in ("o", "ref"):
            return {}
        return None

    def walk(self, v, node):
        if isinstance(node, str):
            if node == "s":
                if not isinstance(v, str):
                    raise _Mismatch(v, node)
                return self.string(v)
            if node == "b":
                if not isinstance(v, bool):
                    raise _Mismatch(v, node)
                return v
            if node == "f":
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise _Mismatch(v, node)
                if abs(v) == float("inf") or (isinstance(v, int) and abs(v) > 1.8e308):
                    raise _Mismatch(v, node, numeric=True)
                return float(v)
            if node == "strslice":
                if isinstance(v, str):
                    return [self.string(v)]
                return self.walk(v, ("a", "s", None))
            return self.anything(v)
        tag = node[0]
        if tag == "ref":
            return self.walk(v, self.defs[node[1]])
        if tag == "i":
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise _Mismatch(v, node)
            lo, hi = GO_INT_RANGES[node[1]]
            if isinstance(v, float) or not lo <= v <= hi:
                raise _Mismatch(v, node, numeric=True)
            return v
        if tag == "a":
            if not isinstance(v, list):
                raise _Mismatch(v, node)
            elem, n = node[1], node[2]
            out = [self.zero(elem) if x is None else self.walk(x, elem) for x in v]
            if n:  # a Go array [n]T: extra elements are dropped, missing ones are zero
                out = (out + [self.zero(elem)] * n)[:n]
            return out
        if tag == "m":
            if not isinstance(v, dict):
                raise _Mismatch(v, node)
            out = {}
            for k, x in v.items():
                try:
                    out[self.string(k)] = self.zero(node[1]) if x is None else self.walk(x, node[1])
                except _Mismatch as e:
                    e.keys.append(k)
                    raise
            return out
        # "o": a struct
        if not isinstance(v, dict):
            raise _Mismatch(v, node)
        fields, out = node[2], {}
        for k, x in v.items():
            f = fields.get(k.casefold())
            try:
                if f is None:
                    out[k] = self.anything(x)  # unknown: ignored by Go, passed on as sent
                elif x is not None:  # null leaves a Go field at its zero value: as if absent
                    out[f[0]] = self.walk(x, f[1])
                else:
                    out.pop(f[0], None)
            except _Mismatch as e:
                e.keys.append(f[0] if f else k)
                raise
        return out

    @staticmethod
    def string(s: str) -> str:
        if "\x00" in s:
            raise _Mismatch(s, "s", text="contains a NUL byte")
        return s if s.isascii() else _SURROGATE.sub("\ufffd", s)

    def anything(self, v):
        """A value of no declared type (Go's interface{}): numbers must still fit a float64."""
        if isinstance(v, dict):
            return {self.string(k): self.anything(x) for k, x in v.items()}
        if isinstance(v, list):
            return [self.anything(x) for x in v]
        if isinstance(v, str):
            return self.string(v)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if abs(v) == float("inf") or (isinstance(v, int) and abs(v) > 1.8e308):
                raise _Mismatch(v, "f", numeric=True)
            return float(v) if isinstance(v, _Num) else v
        return v


# ---- operations --------------------------------------------------------------------------------

_types = None


def _api_types():
    global _types
    if _types is None:
        from . import api_types
        _types = api_types
    return _types


def operation(method: str, template: str):
    """The API's (query types, body type) for ``("POST", "/containers/{}/stop")``, or None."""
    return _api_types().OPERATIONS.get((method, template))


def check_query(op, query: dict[str, str]) -> None:
    """Integer parameters as ``strconv.Atoi`` reads them; no NUL byte in any parameter."""
    for name, value in query.items():
        if "\x00" in name or "\x00" in value:
            raise Invalid(f"invalid {name}: contains a NUL byte")
    for name, node in (op[0] if op else {}).items():
        value = query.get(name, "")
        if value == "" or node[0] != "i":  # booleans are lenient in dockerd; strings are the handler's
            continue
        if not _ATOI.fullmatch(value):
            raise Invalid(f'strconv.Atoi: parsing "{value}": invalid syntax')
        lo, hi = GO_INT_RANGES.get(node[1], GO_INT_RANGES["int64"])
        if not lo <= int(value) <= hi:
            raise Invalid(f'strconv.Atoi: parsing "{value}": value out of range')
    if query.get("filters"):
        check_filters(query["filters"])


def check_filters(raw: str) -> None:
    """``filters=``: a map[string]map[string]bool, or the legacy map[string][]string (moby's FromJSON)."""
    try:
        f = json.loads(raw)
    except (ValueError, RecursionError):
        raise Invalid("invalid filter") from None
    if f is None:
        return
    if not isinstance(f, dict):
        raise Invalid("invalid filter")
    for values in f.values():
        if values is None:
            continue
        if isinstance(values, dict):
            ok = all(v is None or isinstance(v, bool) for v in values.values())
        else:
            ok = isinstance(values, list) and all(v is None or isinstance(v, str) for v in values)
        if not ok:
            raise Invalid("invalid filter")


def parse_filters(raw: str | None) -> dict[str, list[str]]:
    """``filters=`` as a handler reads it: name -> values, from either of moby's forms
    (``{"dangling":["true"]}``, or ``{"dangling":{"true":true}}``); a name without values is no
    filter. ``Guarded`` has run :func:`check_filters` already; a direct caller gets the 400 too."""
    if not raw:
        return {}
    try:
        check_filters(raw)
    except Invalid:
        from .errors import InvalidRequest
        raise InvalidRequest(f"invalid filter: {raw}") from None
    return {name: list(values) for name, values in (json.loads(raw) or {}).items() if values}


def check_body(op, data: bytes):
    """The body decoded as Go would, in the API's key spelling; Invalid if Go would refuse it."""
    value = parse_json(data)
    if value is None or not op or not op[1]:
        return value
    root, node = op[1]
    try:
        value = _Walker(_api_types().DEFS, root).check(value, node)
    except RecursionError:
        raise Invalid("invalid JSON: exceeded max depth") from None
    check_meaning(root, value)
    return value


def check_meaning(root: str, body: dict) -> None:
    """What dockerd checks at create time beyond the types."""
    if root != "CreateRequest" or not isinstance(body, dict):
        return
    host = body.get("HostConfig") or {}
    runtime = host.get("Runtime") or ""
    if runtime and runtime not in RUNC_COMPATIBLE:
        raise Invalid(f"unknown or invalid runtime name: {runtime}")
    driver = (host.get("LogConfig") or {}).get("Type") or ""
    if driver and driver not in LOG_DRIVERS:
        raise Invalid(f"logger: no log driver named '{driver}' is registered")
    for key in (host.get("LogConfig") or {}).get("Config") or {}:
        if key not in LOG_OPTS:
            if driver == "local":
                raise Invalid(f"unknown log opt '{key}' for log driver local")
            raise Invalid(f"unknown log opt '{key}' for {driver or 'json-file'} log driver")


# Compressed archives docker cp accepts, by their magic numbers (gzip, bzip2, xz, zstd).
_COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")


def check_tar_head(head: bytes) -> None:
    """Does a ``PUT /containers/ID/archive`` body start as a tar stream? Only the first 512-byte block
    is looked at (the body itself streams into the helper; a tar broken further in fails there)."""
    import tarfile
    if head.startswith(_COMPRESSED):
        return
    if len(head) < tarfile.BLOCKSIZE:
        raise Invalid("Error processing tar file: unexpected EOF")
    try:
        tarfile.TarInfo.frombuf(head[:tarfile.BLOCKSIZE], "utf-8", "surrogateescape")
    except tarfile.EOFHeaderError:
        return  # an empty archive: its end-of-archive block
    except tarfile.HeaderError:
        raise Invalid("Error processing tar file: archive/tar: invalid tar header") from None


def template_of(pattern: str) -> str:
    """A route's regex as the API's path template: ``/containers/(?P<id>[^/]+)/stop`` -> ``/containers/{}/stop``."""
    return re.sub(r"\(\?P<\w+>[^)]*\)", "{}", pattern)


class Guarded:
    """The server's route table, with every handler registered through it checked first.

    ``error(status, message)`` builds the exception the HTTP layer turns into a response.
    """

    def __init__(self, server, error):
        self._server, self._error = server, error

    def __getattr__(self, name):
        return getattr(self._server, name)

    def route(self, method: str, pattern: str, handler=None):
        if handler is None:
            return lambda fn: self.route(method, pattern, fn)
        self._server.route(method, pattern, self.checked(method.upper(), template_of(pattern), handler))
        return handler

    def checked(self, method: str, template: str, handler):
        error, op = self._error, None
        looked_up = False

        async def checked_handler(req):
            nonlocal op, looked_up
            if "\x00" in req.path:
                raise error(400, "invalid path: contains a NUL byte")
            if not req.query and not req.body_size:  # /_ping, inspect...: nothing to check
                return await handler(req)
            if not looked_up:
                op, looked_up = operation(method, template), True
            try:
                check_query(op, req.query)
                if op and op[1] and req.body_size:  # a JSON body (small: not a tar, not an image)
                    req.replace_json(check_body(op, req.body))  # what the handler's req.json() returns
            except Invalid as e:
                raise error(400, str(e)) from None
            return await handler(req)

        checked_handler.__name__ = getattr(handler, "__name__", "handler")
        return checked_handler

"""Go's fmt, as templates print values: ``%v`` of JSON values and ``Sprintf``/``Sprint`` for ``printf``/``print``.

What this teaches
-----------------
A Go template prints every value with fmt's ``%v``: a list is ``[a b]``, a map ``map[k:v]`` (keys
sorted), nil ``<nil>``, a float its shortest digits (``1e+06`` from a million up). ``printf`` is Go's
Sprintf, whose verbs differ from Python's ``%`` in the details users see: ``%v`` takes anything,
``%s`` of a bool prints ``%!s(bool=true)`` instead of failing, ``%q`` quotes like Go, ``%T`` names
the Go type (int, string, []interface {}). https://pkg.go.dev/fmt. Used by gotemplate.py; standard
library only (the CLI's rule). A verb we do not format raises :class:`FmtError` rather than
printing something Go would not.
"""
from __future__ import annotations

import re


class FmtError(ValueError):
    """A value or a printf verb this module does not format."""


# ---- printing values as Go's fmt %v does --------------------------------------------------------
def go_float(f: float) -> str:
    """Go's %v of a float64 (strconv 'g', shortest): the exponent form below 1e-4 and from 1e6 up,
    so 1000000.0 prints ``1e+06`` and 0.25 prints ``0.25``."""
    if f != f:
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "0"
    from decimal import Decimal  # only when a float is printed
    d = Decimal(repr(f)).normalize()   # repr: the shortest digits that read back the same (as Go's)
    e = d.adjusted()
    if e < -4 or e >= 6:
        digits = "".join(map(str, d.as_tuple().digits))
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{'-' if f < 0 else ''}{mant}e{'-' if e < 0 else '+'}{abs(e):02d}"
    return format(d, "f")


def go_string(v) -> str:
    """What ``{{.X}}`` prints: Go's fmt %v of a JSON value."""
    if isinstance(v, str):
        return v
    if v is True or v is False:
        return "true" if v else "false"
    if v is None:
        return "<nil>"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(go_string(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{go_string(k)}:{go_string(v[k])}" for k in sorted(v, key=str)
                                 if not callable(v[k])) + "]"
    raise FmtError(f"cannot print a value of type {type(v).__name__}")


def go_type(v) -> str:
    if isinstance(v, str):
        return "string"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, (list, tuple)):
        return "[]interface {}"
    if isinstance(v, dict):
        return "map[string]interface {}"
    return "<nil>"


# ---- printf ----------------------------------------------------------------------------------------
_VERB = re.compile(r"%([-+# 0]*)(\d+|\*)?(?:\.(\d+|\*)?)?([a-zA-Z%])")


def go_quote(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif not ch.isprintable():
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x80 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def go_sprintf(fmt: str, *args) -> str:
    """Go's fmt.Sprintf for the verbs templates use: %v %s %q %d %x %X %o %b %f %e %g %t %T %c %%."""
    out, pos, i = [], 0, 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos:m.start()])
        pos = m.end()
        flags, width, prec, verb = m.group(1), m.group(2), m.group(3), m.group(4)
        if verb == "%":
            out.append("%")
            continue
        if width == "*" or prec == "*":
            raise FmtError("printf: '*' widths are not supported by minidocker's --format")
        if i >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        v = args[i]
        i += 1
        out.append(_pad(_one(verb, v, flags, prec), flags, width))
    out.append(fmt[pos:])
    if i < len(args):
        out.append("%!(EXTRA " + ", ".join(f"{go_type(a)}={go_string(a)}" for a in args[i:]) + ")")
    return "".join(out)


def _bad(verb, v) -> str:
    return f"%!{verb}(<nil>)" if v is None else f"%!{verb}({go_type(v)}={go_string(v)})"


def _one(verb: str, v, flags: str, prec: str | None) -> str:
    is_int = isinstance(v, int) and not isinstance(v, bool)
    if verb == "v":
        return go_string(v) if not isinstance(v, float) or prec is None else f"{v:.{prec}g}"
    if verb == "T":
        return go_type(v)
    if verb == "t":
        return ("true" if v else "false") if isinstance(v, bool) else _bad(verb, v)
    if verb in "sq":
        if isinstance(v, str):
            s = v if prec is None else v[:int(prec)]
            return s if verb == "s" else go_quote(s)
        if isinstance(v, (list, tuple)):
            return "[" + " ".join(_one(verb, x, flags, prec) for x in v) + "]"
        if isinstance(v, dict):
            return "map[" + " ".join(f"{_one(verb, k, flags, prec)}:{_one(verb, v[k], flags, prec)}"
                                     for k in sorted(v, key=str)) + "]"
        if verb == "q" and is_int:
            return "'" + chr(v) + "'"
        return _bad(verb, v)
    if verb in "dboxXc":
        if isinstance(v, (list, tuple)):
            return "[" + " ".join(_one(verb, x, flags, prec) for x in v) + "]"
        if verb in "xX" and isinstance(v, str):
            h = v.encode().hex()
            return h.upper() if verb == "X" else h
        if not is_int:
            return _bad(verb, v)
        if verb == "c":
            return chr(v)
        spec = {"d": "d", "b": "b", "o": "o", "x": "x", "X": "X"}[verb]
        sign = "+" if "+" in flags else (" " if " " in flags else "")
        return format(v, sign + ("#" if "#" in flags and verb != "d" else "") + spec)
    if verb in "feEgG":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return _bad(verb, v)
        sign = "+" if "+" in flags else (" " if " " in flags else "")
        if verb in "gG" and prec is None:
            s = go_float(float(v))
            return (sign if v >= 0 else "") + (s.upper() if verb == "G" else s)
        return format(float(v), f"{sign}.{6 if prec is None else int(prec)}{verb}")
    raise FmtError(f"printf: the verb %{verb} is not supported by minidocker's --format")


def _pad(s: str, flags: str, width: str | None) -> str:
    if not width or len(s) >= int(width):
        return s
    w = int(width)
    if "-" in flags:
        return s.ljust(w)
    if "0" in flags and s.lstrip("+- ").replace(".", "", 1).isdigit():
        sign = s[0] if s[0] in "+- " else ""
        return sign + s[len(sign):].rjust(w - len(sign), "0")
    return s.rjust(w)


def go_sprint(*args) -> str:
    """fmt.Sprint: spaces between operands when neither side is a string."""
    out = []
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(go_string(a))
    return "".join(out)

"""Validating ``config.json`` against the OCI runtime spec's JSON schema, fast enough for every start.

What this teaches
-----------------
The runtime spec ships its own JSON schemas (``schema/*.json`` here, copied verbatim from
runtime-spec's ``schema/``): ``config-schema.json`` refers to ``defs.json``, ``config-linux.json``,
``defs-linux.json`` and the other platforms' files. A runtime that accepts a bundle should check it
against them, and report *where* it is wrong.

Why not ``jsonschema`` (which images/model.py uses)? A runtime is a short-lived command: runc
starts a container in ~24 ms, and importing jsonschema here costs ~160 ms (1.9 s when the optional
``rfc3987_syntax`` format checker is installed: it builds a grammar at import). So the schema is
*compiled*: ``fastjsonschema`` turns the (bundled) schema into plain Python source once, the code
object is cached with ``marshal`` under the runtime's state root, keyed by the schema files, Python
and fastjsonschema versions, and later starts load it in ~1 ms and validate in well under 1 ms.

fastjsonschema does not follow ``$ref`` across files reliably, so :func:`bundle` first merges every
schema file into one document (``#/files/<name>/...``), rewriting each reference to point inside it.
"""
from __future__ import annotations

import json
import marshal
import os
import sys
import zlib

SCHEMA_DIR = os.path.join(os.path.dirname(__file__), "schema")
TOP = "config-schema.json"


class InvalidConfig(ValueError):
    """config.json does not follow the runtime spec; the message names the field."""


def bundle(directory: str = SCHEMA_DIR) -> dict:
    """Every ``*.json`` schema of ``directory`` in one document, references rewritten to
    ``#/files/<file>/<pointer>`` (the spec writes both ``#/definitions/x`` and ``#definitions/x``)."""
    def rewrite(node, here: str):
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key == "$ref" and isinstance(value, str):
                    target, _, pointer = value.partition("#")
                    out[key] = f"#/files/{target or here}/{pointer.lstrip('/')}"
                else:
                    out[key] = rewrite(value, here)
            return out
        if isinstance(node, list):
            return [rewrite(x, here) for x in node]
        return node

    files = {}
    for name in sorted(os.listdir(directory)):
        if name.endswith(".json"):
            with open(os.path.join(directory, name)) as f:
                files[name] = rewrite(json.load(f), name)
    return {"$schema": "http://json-schema.org/draft-04/schema#", "$ref": f"#/files/{TOP}", "files": files}


def _ident(directory: str) -> str:
    """What the cached validator depends on: Python's version and each schema file's name, size and
    mtime. stat, not content: hashing the files (and importing hashlib) cost more than the rest of
    the lookup on the runtime's start-up path; an edited file changes its mtime. The cache file is
    named by a CRC of this and stores it whole, so a CRC collision is detected, not trusted."""
    ident = [sys.version, _CODEGEN]
    for name in sorted(os.listdir(directory)):
        if name.endswith(".json"):
            st = os.stat(os.path.join(directory, name))
            ident.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
    return "\0".join(ident)


class _ValueError(InvalidConfig):
    """Stands in for fastjsonschema's exception class in the generated code (so that loading the
    cached validator imports nothing but ``re``)."""

    def __init__(self, message, value=None, name=None, definition=None, rule=None):
        super().__init__(message)
        self.name = name


class _NoDecimal:
    """Stands in for ``decimal.Decimal`` in the generated type checks (``isinstance(x, (int, float,
    Decimal))``): a config.json parsed by ``json`` holds no Decimal, and importing ``decimal`` costs
    ~2 ms of every runtime start."""


_CODEGEN = "2"   # how the generated source is edited below; part of the cache key
_validate = None


def validator(cache_dir: str | None):
    """The compiled ``validate(doc)`` function, from the cache in ``cache_dir`` or compiled now."""
    global _validate
    if _validate is not None:
        return _validate
    ident = _ident(SCHEMA_DIR)
    path = os.path.join(cache_dir, f"config-schema-{zlib.crc32(ident.encode()):08x}.marshal") if cache_dir else None
    code = None
    if path:
        try:
            with open(path, "rb") as f:
                stored, code = marshal.load(f)
            if stored != ident:
                code = None
        except (OSError, EOFError, ValueError, TypeError):
            code = None
    if code is None:
        import fastjsonschema
        source = fastjsonschema.compile_to_code(bundle(SCHEMA_DIR))
        for line in ("from fastjsonschema import JsonSchemaValueException, JsonSchemaValuesException",
                     "from decimal import Decimal"):
            source = source.replace(line, "")
        code = compile(source, "<config-schema>", "exec")
        if path:
            from ..util import atomic_write
            os.makedirs(cache_dir, mode=0o700, exist_ok=True)
            atomic_write(path, marshal.dumps((ident, code)))
    ns = {"JsonSchemaValueException": _ValueError, "JsonSchemaValuesException": _ValueError,
          "Decimal": _NoDecimal}
    exec(code, ns)  # noqa: S102 - our own generated code, from the shipped schema
    _validate = ns["validate"]
    return _validate


def validate(config: dict, cache_dir: str | None = None) -> None:
    """Raise :class:`InvalidConfig` naming the first field that breaks the schema."""
    try:
        validator(cache_dir)(config)
    except _ValueError as e:
        raise InvalidConfig(f"config.json does not follow the OCI runtime spec: {e}") from None

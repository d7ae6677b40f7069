"""Generate ``api_types.py`` -- the request types of Docker Engine API v1.50 -- from its swagger.

What this teaches
-----------------
The swagger file (``docs/api/docker-engine-api-v1.50.yaml``, moby's ``api/swagger.yaml``) is the API's own description of every
request: the query parameters of each operation and the JSON body it takes. dockerd itself does not
validate against it: it decodes bodies into Go structs with ``encoding/json``, and *that* decoder's rules
are what real clients rely on. So this generator does not emit a JSON Schema; it emits each body as the
Go type it decodes into, as small Python literals that ``validate.py`` walks:

* ``"s"`` string, ``"b"`` bool, ``"f"`` float64, ``"any"`` anything, ``"strslice"`` string-or-list;
* ``("i", gotype)`` an integer in that Go type's range (``int64``, ``uint16``...);
* ``("a", elem, n)`` a slice (``n`` None) or a fixed ``[n]`` array; ``("m", elem)`` a ``map[string]``;
* ``("o", name, {casefolded key: (Key, node)})`` a struct; ``("ref", name)`` a named struct in ``DEFS``.

Run it after changing the swagger file (it needs PyYAML, a development dependency; the daemon never
imports this module -- parsing the 450 kB YAML takes 1.5 s):

    python -m minidocker.daemon.validate_gen [SWAGGER] > minidocker/daemon/api_types.py

Why generated literals and not ``jsonschema``/``fastjsonschema``: JSON Schema cannot say "keys match
case-insensitively" or "null is accepted wherever Go accepts it", and ``import jsonschema`` alone costs
the daemon 1.6 s and 42 MB. The literals load in a few milliseconds (measured in tests/test_validation.py).
"""
from __future__ import annotations

import os
import pprint
import sys

from .validate import GO_INT_RANGES as RANGES

# The swagger file of moby (Apache-2.0), committed under docs/api/ so the generator runs anywhere.
SPEC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                    "docs", "api", "docker-engine-api-v1.50.yaml")

# Fields whose Go type is strslice.StrSlice (a string or a list of strings), not []string.
STRSLICE = {("ContainerConfig", "Cmd"), ("ContainerConfig", "Entrypoint"), ("ContainerConfig", "Shell")}

# The Go type each operation's body decodes into (named in dockerd's error messages).
ROOT_NAMES = {"/containers/create": "CreateRequest", "/commit": "Config", "/containers/{id}/exec": "ExecOptions",
              "/exec/{id}/start": "ExecStartOptions", "/containers/{id}/update": "UpdateConfig",
              "/auth": "AuthConfig"}


class Gen:
    def __init__(self, spec: dict):
        self.spec = spec
        self.defs: dict[str, tuple] = {}

    def deref(self, schema: dict) -> tuple[str | None, dict]:
        ref = schema.get("$ref")
        if ref:
            name = ref.rsplit("/", 1)[1]
            return name, self.spec["definitions"][name]
        return None, schema

    def fields(self, schema: dict, owner: str) -> dict:
        """A struct's fields, ``allOf`` parts merged in order (Go's embedded structs), each field typed
        in the context of the definition that declares it (``ContainerConfig.Cmd`` is a StrSlice)."""
        out: dict = {}
        for part in schema.get("allOf", []):
            name, sub = self.deref(part)
            out.update(self.fields(sub, name or owner))
        for key, sub in (schema.get("properties") or {}).items():
            out[key.casefold()] = (key, self.node(sub, owner, key))
        return out

    def node(self, schema: dict, owner: str, field: str = ""):
        name, schema = self.deref(schema)
        parts = schema.get("allOf") or []
        if len(parts) == 1 and not schema.get("properties"):
            # A field typed by one named definition (``Type: allOf: [$ref MountType]``, a string
            # enum): the field is of that type, not a struct embedding it.
            return self.node(parts[0], owner, field)
        if (owner, field) in STRSLICE:
            return "strslice"
        parts = schema.get("allOf") or []
        if len(parts) == 1 and not schema.get("properties") and not self.is_struct(self.deref(parts[0])[1]):
            # ``Type: {description, allOf: [$ref: MountType]}``: swagger's way to describe a field whose
            # type is a named *string* (a Go ``type MountType string`` enum), not an embedded struct.
            return self.node(parts[0], owner, field)
        if name is not None and self.is_struct(schema):
            if name not in self.defs:
                self.defs[name] = ()  # placeholder: recursive definitions refer to themselves
                self.defs[name] = self.struct(schema, name)
            return ("ref", name)
        kind = schema.get("type")
        if kind == "string":
            return "s"
        if kind == "boolean":
            return "b"
        if kind == "number":
            return "f"
        if kind == "integer":
            # Only the Go type's range: swagger's minimum/maximum are checked (if at all) after decoding,
            # and clients rely on that (the docker CLI sends "MemorySwappiness": -1 for "unset").
            fmt = schema.get("format") or ("uint" if schema.get("minimum") == 0 else "int")
            return ("i", fmt if fmt in RANGES else "int64")
        if kind == "array":
            n = schema.get("maxItems") if schema.get("maxItems") == schema.get("minItems") else None
            return ("a", self.node(schema.get("items") or {}, owner, ""), n)
        if self.is_struct(schema):
            return self.struct(schema, schema.get("title") or name or (owner + "." + field if field else owner))
        if kind == "object":
            extra = schema.get("additionalProperties")
            return ("m", self.node(extra, owner, "") if isinstance(extra, dict) and extra else "any")
        return "any"

    def is_struct(self, schema: dict) -> bool:
        """Has fields of its own, or embeds (``allOf``) a definition that has them."""
        return bool(schema.get("properties")) or any(self.is_struct(self.deref(p)[1]) for p in schema.get("allOf", []))

    def struct(self, schema: dict, name: str) -> tuple:
        return ("o", name, self.fields(schema, name))

    def operations(self) -> dict:
        ops = {}
        for path, methods in self.spec["paths"].items():
            common = methods.get("parameters", [])
            for method, op in methods.items():
                if method == "parameters":
                    continue
                query, body = {}, None
                for p in common + op.get("parameters", []):
                    if p.get("in") == "query":  # validate.py checks the integers; the fuzzer uses them all
                        # since/until are documented as integers but are timestamps ("1700000000.123456789",
                        # RFC 3339): dockerd parses them with timetypes, not strconv.Atoi.
                        timestamp = p["name"] in ("since", "until")
                        query[p["name"]] = "s" if timestamp else self.node(p, "query")
                    elif p.get("in") == "body":
                        schema = p.get("schema") or {}
                        if schema.get("type") == "string":  # a tar stream, an image... not JSON
                            continue
                        root = ROOT_NAMES.get(path) or self.deref(schema)[0] or schema.get("title") or "body"
                        body = (root, self.node(schema, root))
                template = "/".join("{}" if s.startswith("{") else s for s in path.split("/"))
                ops[(method.upper(), template)] = (query, body)
        return ops


def main(argv: list[str]) -> None:
    import yaml  # development dependency only
    with open(argv[0] if argv else SPEC) as f:
        spec = yaml.safe_load(f)
    g = Gen(spec)
    ops = g.operations()
    out = sys.stdout
    out.write('"""Request types of Docker Engine API v%s, as Go decodes them (see validate.py).\n\n'
              'GENERATED by ``python -m minidocker.daemon.validate_gen`` from the API\'s swagger file: do not edit.\n'
              '"""\n# fmt: off\n' % spec["info"]["version"])
    out.write("API_VERSION = %r\n\n" % spec["info"]["version"])
    out.write("DEFS = ")
    out.write(pprint.pformat(dict(sorted(g.defs.items())), width=120, sort_dicts=True))
    out.write("\n\n# (METHOD, path with {} for each parameter) -> ({query parameter: node}, (root type, body node) or None)\n")
    out.write("OPERATIONS = ")
    out.write(pprint.pformat(dict(sorted(ops.items())), width=120, sort_dicts=True))
    out.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])

"""Image verbs of the CLI: images, image inspect/ls/rm/prune/tag/history/save/load/import, tag, rmi,
history, save, load, import. Each is one Docker Engine API request (see daemon/api_images.py);
the CLI only renders the answer as docker does. Standard library only, like the rest of the CLI.

``save`` and ``load`` move archives as raw bytes: the daemon streams a tar to us (``GET
/images/get``), and we stream one to it, chunked (``POST /images/load``), so neither side holds a
multi-hundred-megabyte image in one string on the client.
"""
from __future__ import annotations

import json
import os
import sys

from ..units import ago, human_size
from .client import APIError


def _error(e: APIError | str) -> int:
    msg = e.message if isinstance(e, APIError) else e
    print(f"Error response from daemon: {msg}", file=sys.stderr)
    return 1


def _filters(items: list[str] | None) -> dict | None:
    out: dict[str, list[str]] = {}
    for item in items or []:
        k, eq, v = item.partition("=")
        if not eq:
            raise SystemExit(f"invalid argument \"{item}\" for \"-f, --filter\" flag: bad format of "
                             "filter (expected name=value)")
        out.setdefault(k, []).append(v)
    return out or None


# ---- images / image ls --------------------------------------------------------------------------

def cmd_images(c, a):
    from .output import listing  # (output and its template engine: imported by the verbs that print)
    filters = _filters(a.filter)
    if a.repository:
        filters = filters or {}
        filters.setdefault("reference", []).append(a.repository)
    items = c.request("GET", "/images/json", query={"all": a.all or None,
                                                    "filters": filters}).check().json()
    if a.quiet:
        seen = []
        for it in items:
            iid = it["Id"] if a.no_trunc else it["Id"].split(":", 1)[1][:12]
            if iid not in seen:
                seen.append(iid)
                print(iid)
        return 0
    # docker fills .Digest only with --digests or a format that names {{.Digest}} (formatter/image.go)
    digests = a.digests or "{{.Digest}}" in (a.format or "")
    rows = [r for it in items for r in image_rows(it, not a.no_trunc, digests)]
    default = IMAGES_TABLE.replace("\t{{.ID}}", "\t{{.Digest}}\t{{.ID}}") if a.digests else IMAGES_TABLE
    sys.stdout.write(listing(a.format or "table", rows, IMAGE_HEADERS, default))
    return 0


IMAGES_TABLE = "{{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
IMAGE_HEADERS = {"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
                 "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
                 "Containers": "CONTAINERS", "VirtualSize": "SIZE", "SharedSize": "SHARED SIZE",
                 "UniqueSize": "UNIQUE SIZE"}


def image_rows(it: dict, trunc: bool = True, digests: bool = True) -> list:
    """An image as docker's ``images --format`` sees it (cli/command/formatter/image.go): one row
    per tag (``<none>`` for an untagged image)."""
    import time

    from .gotemplate import Row
    iid = it["Id"].split(":", 1)[1][:12] if trunc else it["Id"]
    repo_digests = (it.get("RepoDigests") or []) if digests else []
    rows = []
    for ref in it.get("RepoTags") or ["<none>:<none>"]:
        repo, _, tag = ref.rpartition(":")
        digest = next((d.split("@", 1)[1] for d in repo_digests if d.split("@", 1)[0] == repo), "<none>")
        rows.append(Row({
            "Containers": "N/A" if it.get("Containers", -1) < 0 else str(it["Containers"]),
            "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(it["Created"])),
            "CreatedSince": ago(it["Created"]), "Digest": digest, "ID": iid, "Repository": repo,
            "SharedSize": "N/A" if it.get("SharedSize", -1) < 0 else human_size(it["SharedSize"]),
            "Size": human_size(it["Size"]), "Tag": tag, "UniqueSize": "N/A",
            "VirtualSize": human_size(it.get("VirtualSize", it["Size"]))}))
    return rows


def cmd_image_inspect(c, a):
    from .output import objects
    out, rc = [], 0
    for name in a.images:
        r = c.request("GET", f"/images/{name}/json")
        if r.status >= 400:
            print(f"Error: No such image: {name}", file=sys.stderr)
            rc = 1
            continue
        out.append(r.json())
    if a.format:
        sys.stdout.write(objects(a.format, out))
    else:
        print(json.dumps(out, indent=4))
    return rc


# ---- tag / rmi / history / prune ---------------------------------------------------------------

def cmd_tag(c, a):
    target = a.target
    last = target.rsplit("/", 1)[-1]
    repo, tag = (target.rsplit(":", 1) if ":" in last and "@" not in target else (target, None))
    r = c.request("POST", f"/images/{a.source}/tag", query={"repo": repo, "tag": tag})
    return _error(APIError.from_body(r.status, r.body)) if r.status >= 400 else 0


def cmd_rmi(c, a):
    rc = 0
    for name in a.images:
        r = c.request("DELETE", f"/images/{name}", query={"force": a.force or None,
                                                         "noprune": a.no_prune or None})
        if r.status >= 400:
            rc = _error(APIError.from_body(r.status, r.body))
            continue
        for item in r.json():
            for k, v in item.items():
                print(f"{k}: {v}")
    return rc


def cmd_history(c, a):
    from .output import table
    rows = c.request("GET", f"/images/{a.image}/history").check().json()
    if a.quiet:
        for row in rows:
            print(row["Id"] if a.no_trunc or row["Id"] == "<missing>" else row["Id"].split(":", 1)[1][:12])
        return 0
    out = []
    for row in rows:
        iid = row["Id"] if a.no_trunc or row["Id"] == "<missing>" else row["Id"].split(":", 1)[1][:12]
        by = row["CreatedBy"] if a.no_trunc or len(row["CreatedBy"]) <= 45 else row["CreatedBy"][:44] + "…"
        out.append([iid, ago(row["Created"]) if row["Created"] else "N/A", by,
                    human_size(row["Size"]), row.get("Comment", "")])
    print(table(out, ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]))
    return 0


def cmd_prune(c, a):
    filters = _filters(a.filter) or {}
    if a.all:
        filters["dangling"] = ["false"]
    if not a.force:
        what = "all images without at least one container associated to them" if a.all \
            else "all dangling images"
        print(f"WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ",
              end="", flush=True)
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    res = c.request("POST", "/images/prune", query={"filters": filters or None}).check().json()
    if res.get("ImagesDeleted"):
        print("Deleted Images:")
        for item in res["ImagesDeleted"]:
            for k, v in item.items():
                print(f"{k.lower()}: {v}")
        print()
    print(f"Total reclaimed space: {human_size(res.get('SpaceReclaimed', 0))}")
    return 0


# ---- save / load / import ---------------------------------------------------------------------

def cmd_save(c, a):
    if not a.output and sys.stdout.isatty():
        return _error("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    query = [("names", n) for n in a.images]
    if a.format != "docker-archive":
        query.append(("format", "oci-archive"))
    stream = c.open_stream("GET", "/images/get", query=query)
    if a.format == "oci":  # a layout directory: unpack the oci-archive here
        if not a.output:
            return _error("--format oci writes a directory: give it with -o DIR")
        import tarfile
        with stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            tar.extractall(a.output, filter="data")
        return 0
    tmp = None
    try:
        if a.output:
            tmp = a.output + ".tmp-minidocker"
            out = open(tmp, "wb")
        else:
            out = sys.stdout.buffer
        with stream:
            while chunk := stream.read(1 << 20):
                out.write(chunk)
        out.flush()
        if tmp:
            out.close()
            os.rename(tmp, a.output)  # no half-written archive under the real name
            tmp = None
    finally:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)
    return 0


def _send_stream(c, path: str, query, f) -> int:
    rc = 0
    for msg in c.stream("POST", path, query=query, body=f,
                        headers={"Content-Type": "application/x-tar"}):
        if msg.get("error") or msg.get("errorDetail"):
            print(msg.get("error") or msg["errorDetail"].get("message"), file=sys.stderr)
            rc = 1
        elif "stream" in msg:
            print(msg["stream"], end="")
        elif "status" in msg:
            print(msg["status"])
    return rc


def _tar_of_directory(path: str):
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in sorted(os.listdir(path)):
            tar.add(os.path.join(path, name), arcname=name)
    buf.seek(0)
    return buf


def cmd_load(c, a):
    if a.input and os.path.isdir(a.input):  # an OCI layout directory
        return _send_stream(c, "/images/load", {"quiet": a.quiet or None}, _tar_of_directory(a.input))
    if a.input:
        with open(a.input, "rb") as f:
            return _send_stream(c, "/images/load", {"quiet": a.quiet or None}, f)
    if sys.stdin.isatty():
        return _error("requested load from stdin, but stdin is empty")
    return _send_stream(c, "/images/load", {"quiet": a.quiet or None}, sys.stdin.buffer)


def cmd_import(c, a):
    query = [("fromSrc", "-")]
    if a.repository:
        last = a.repository.rsplit("/", 1)[-1]
        repo, tag = a.repository.rsplit(":", 1) if ":" in last else (a.repository, "")
        query += [("repo", repo), ("tag", tag)]
    query += [("changes", ch) for ch in a.change or []]
    if a.message:
        query.append(("message", a.message))
    if a.file == "-":
        return _send_stream(c, "/images/create", query, sys.stdin.buffer)
    if os.path.isdir(a.file):  # docker import takes tarballs; a directory is tarred here first
        return _send_stream(c, "/images/create", query, _tar_of_directory(a.file))
    try:
        f = open(a.file, "rb")
    except OSError as e:
        return _error(f"cannot read {a.file}: {e.strerror}")
    with f:
        return _send_stream(c, "/images/create", query, f)


# ---- the parser -------------------------------------------------------------------------------

def _images_args(p):
    p.add_argument("-a", "--all", action="store_true", help="show all images (incl. intermediate)")
    p.add_argument("-q", "--quiet", action="store_true", help="only show image IDs")
    p.add_argument("-f", "--filter", action="append", help="dangling=true, reference=busybox*, "
                   "label=k=v, before=IMG, since=IMG")
    p.add_argument("--format")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--digests", action="store_true", help="show digests")
    p.add_argument("repository", nargs="?")
    p.set_defaults(fn=cmd_images)


def _add(sub, name, fn, help_, **kw):
    p = sub.add_parser(name, help=help_, **kw)
    p.set_defaults(fn=fn)
    return p


def _inspect(sub, name):  # only as `image inspect`: top-level `inspect` is containers.py's (both kinds)
    ins = _add(sub, name, cmd_image_inspect, "display detailed information on images")
    ins.add_argument("-f", "--format")
    ins.add_argument("images", nargs="+")


def _tag(sub, name):
    t = _add(sub, name, cmd_tag, "create a tag TARGET that refers to SOURCE")
    t.add_argument("source")
    t.add_argument("target")


def _rmi(sub, name):  # top-level `rmi`; `image rm` (alias `image rmi`)
    rm = _add(sub, name, cmd_rmi, "remove images", aliases=["rmi"] if name == "rm" else [])
    rm.add_argument("-f", "--force", action="store_true")
    rm.add_argument("--no-prune", action="store_true")
    rm.add_argument("images", nargs="+")


def _history(sub, name):
    h = _add(sub, name, cmd_history, "show the history of an image")
    h.add_argument("-q", "--quiet", action="store_true")
    h.add_argument("--no-trunc", action="store_true")
    h.add_argument("image")


def _save(sub, name):
    s = _add(sub, name, cmd_save, "save images to a tar archive (docker-archive; also OCI)")
    s.add_argument("-o", "--output")
    s.add_argument("--format", default="docker-archive", choices=["docker-archive", "oci-archive", "oci"],
                   help="docker-archive (default; also a valid OCI layout), oci-archive, or oci (a layout directory, -o DIR)")
    s.add_argument("images", nargs="+")


def _load(sub, name):
    ld = _add(sub, name, cmd_load, "load images from a tar archive (docker-archive or OCI)")
    ld.add_argument("-i", "--input")
    ld.add_argument("-q", "--quiet", action="store_true")


def _import(sub, name):
    im = _add(sub, name, cmd_import, "import a root filesystem tarball (or directory) as an image")
    im.add_argument("-c", "--change", action="append")
    im.add_argument("-m", "--message")
    im.add_argument("file")
    im.add_argument("repository", nargs="?")


# The verbs that exist both at the top level (`minidocker tag`) and under `image` (`image tag`).
_SHARED = {"tag": _tag, "rmi": _rmi, "history": _history, "save": _save, "load": _load, "import": _import}


def add_images(sub, verb: str) -> None:
    _images_args(sub.add_parser(verb, help="list images"))


def add_top_level(sub, verb: str) -> None:
    """``tag``, ``rmi``, ``history``, ``save``, ``load``, ``import`` at the top level."""
    _SHARED[verb](sub, verb)


def add_image(sub, verb: str) -> None:
    """``image ls|inspect|rm|prune|tag|history|save|load|import``."""
    image = sub.add_parser(verb, help="manage images: image ls|inspect|rm|prune|tag|history|save|load|import")
    isub = image.add_subparsers(dest="image_verb", metavar="COMMAND")
    _images_args(isub.add_parser("ls", aliases=["list"], help="list images"))
    _inspect(isub, "inspect")
    for name, add in _SHARED.items():
        add(isub, "rm" if name == "rmi" else name)
    pr = _add(isub, "prune", cmd_prune, "remove unused images")
    pr.add_argument("-a", "--all", action="store_true", help="all images not used by a container")
    pr.add_argument("-f", "--force", action="store_true", help="do not ask")
    pr.add_argument("--filter", action="append")
    image.set_defaults(fn=lambda c, a: (image.print_help(), 0)[1])

"""``minidocker diff`` and ``minidocker commit`` (the copy-on-write chapter), stdlib only.

    minidocker diff c1                  # C /bin   D /bin/ls   A /new   (docker's output)
    minidocker commit c1 mine:1         # prints the new image id
    minidocker commit -c 'CMD ["cat","/new"]' -c 'ENV A=1' -m "a comment" -a me c1 mine:2
"""
from __future__ import annotations

KINDS = {0: "C", 1: "A", 2: "D"}


def cmd_diff(c, a) -> int:
    for ch in c.request("GET", f"/containers/{a.container}/changes").check().json() or []:
        print(f"{KINDS.get(ch['Kind'], '?')} {ch['Path']}")
    return 0


def split_reference(ref: str) -> tuple[str, str]:
    """``repo[:tag]`` -> (repo, tag); a ':' before the last '/' is a registry port, not a tag."""
    if not ref:
        return "", ""
    head, _, last = ref.rpartition("/")
    if ":" in last:
        name, _, tag = last.partition(":")
        return (f"{head}/{name}" if head else name), tag
    return ref, ""


def cmd_commit(c, a) -> int:
    repo, tag = split_reference(a.repository or "")
    q = [("container", a.container), ("repo", repo), ("tag", tag), ("comment", a.message or ""),
         ("author", a.author or ""), ("pause", "1")]
    q += [("changes", ch) for ch in a.change]   # repeated, as the docker CLI sends them
    out = c.request("POST", "/commit", query=q).check().json()
    print(out["Id"])
    return 0


def add_diff(sub, verb: str) -> None:
    d = sub.add_parser(verb, help="changes to files of a container's filesystem (A added, C changed, D deleted)")
    d.add_argument("container")
    d.set_defaults(fn=cmd_diff)


def add_commit(sub, verb: str) -> None:
    cm = sub.add_parser(verb, help="create a new image from a container's changes")
    cm.add_argument("-c", "--change", action="append", default=[],
                    help="Dockerfile instruction for the new image: CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, "
                         "EXPOSE, STOPSIGNAL, VOLUME")
    cm.add_argument("-m", "--message", help="commit message")
    cm.add_argument("-a", "--author", help='author (e.g. "Jane <jane@example.com>")')
    cm.add_argument("-p", "--pause", action="store_true", default=True, help="(accepted; minidocker does not pause)")
    cm.add_argument("container")
    cm.add_argument("repository", nargs="?", help="REPOSITORY[:TAG]")
    cm.set_defaults(fn=cmd_commit)

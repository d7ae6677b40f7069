"""minidockerd --userns-remap (issue 10 point 6): every container in a user namespace whose root is
an unprivileged host id; --userns=host opts out; the image shows root-owned files inside through
idmapped layers (runtime/idmap.py), and what the container writes belongs to the mapped id on the
host's writable layer.

The daemon reads /etc/passwd, /etc/group, /etc/subuid, /etc/subgid: it runs in a private mount
namespace (``unshare -m``) where temporary copies are bind-mounted over them — the host's files
are never touched."""
import os
import subprocess
import tempfile

import pytest

from conftest import Daemon, need_root, need_tool, cgroup_leftovers, remove_cgroup_parent

_WRAP = ('mount --bind "$1" /etc/subuid && mount --bind "$2" /etc/subgid && mount --bind "$3" /etc/passwd'
         ' && mount --bind "$4" /etc/group && shift 4 && exec "$@"')


class RemapDaemon(Daemon):
    """A Daemon started inside its own mount namespace with the temporary /etc files."""

    def __init__(self, base: str, files: dict, remap: str):
        super().__init__(base)
        self.files, self.remap = files, remap
        self.cgroup_parent += "-userns"

    def start(self, timeout: float = 60) -> "RemapDaemon":
        real_popen = subprocess.Popen

        def popen(cmd, **kw):
            wrapped = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _WRAP, "sh",
                       *(self.files[n] for n in ("subuid", "subgid", "passwd", "group")),
                       *cmd, "--userns-remap", self.remap]
            return real_popen(wrapped, **kw)

        subprocess.Popen = popen
        try:
            return super().start(timeout)
        finally:
            subprocess.Popen = real_popen


def _free_id(path: str) -> int:
    used = {int(line.split(":")[2]) for line in open(path) if line.count(":") >= 3}
    return next(i for i in range(900, 1000) if i not in used)


@pytest.fixture(scope="module")
def remap():
    need_root()
    need_tool("unshare")
    base = tempfile.mkdtemp(prefix="mdtest-userns-", dir="/tmp")
    uid, gid = _free_id("/etc/passwd"), _free_id("/etc/group")
    start = 100000 + 65536 * (os.getpid() % 50)   # any range: the test reads back what it wrote
    files = {}
    for name, extra in (("passwd", f"dockremap:x:{uid}:{gid}::/nonexistent:/bin/false\n"),
                        ("group", f"dockremap:x:{gid}:\n"),
                        ("subuid", f"other:1000000:65536\ndockremap:{start}:65536\ndockremap:500000:65536\n"),
                        ("subgid", f"dockremap:{start + 65536}:65536\n")):
        files[name] = os.path.join(base, name)
        with open(files[name], "w") as f:
            f.write(open(f"/etc/{name}").read() + extra)
    host_before = {n: open(f"/etc/{n}").read() for n in files}
    d = RemapDaemon(base, files, "default")
    try:
        d.start()
        yield d, start, start + 65536
    finally:
        left = d.shutdown()   # removes its containers, stops it, deletes base
        cg_left = cgroup_leftovers(d.cgroup_parent)
        remove_cgroup_parent(d.cgroup_parent)
        assert {n: open(f"/etc/{n}").read() for n in files} == host_before, "the host's /etc files changed"
        assert not left and not cg_left, (left, cg_left)


def _run(d, cmd, host=None, name=None, image="busybox:latest"):
    """Create and start a container; return (id, pid) — it runs ``cmd`` (kept alive by the caller's
    command)."""
    st, body = d.api("POST", "/containers/create" + (f"?name={name}" if name else ""),
                     {"Image": image, "Cmd": cmd, "HostConfig": {"NetworkMode": "none", **(host or {})}})
    assert st == 201, body
    cid = body["Id"]
    st, body = d.api("POST", f"/containers/{cid}/start")
    assert st == 204, body
    st, info = d.api("GET", f"/containers/{cid}/json")
    return cid, info


def _wait(d, cid):
    st, body = d.api("POST", f"/containers/{cid}/wait", timeout=60)
    assert st == 200, body
    return body["StatusCode"]


def _logs(d, cid) -> str:
    r = d.cli("logs", cid)
    return r.stdout.decode() + r.stderr.decode()


def test_info_shows_userns(remap):
    d, _, _ = remap
    st, info = d.api("GET", "/info")
    assert "name=userns" in info["SecurityOptions"]


def test_container_root_is_the_mapped_id(remap):
    d, uid_start, gid_start = remap
    cid, info = _run(d, ["sleep", "60"])
    try:
        pid = info["State"]["Pid"]
        uid_map = open(f"/proc/{pid}/uid_map").read().split()
        gid_map = open(f"/proc/{pid}/gid_map").read().split()
        assert uid_map == ["0", str(uid_start), "65536"]     # the user's FIRST subuid range
        assert gid_map == ["0", str(gid_start), "65536"]
        # Outside, the container's root is the mapped id ...
        status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
        assert status["Uid"].split()[0] == str(uid_start)
        assert status["Gid"].split()[0] == str(gid_start)
        assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
    finally:
        d.api("DELETE", f"/containers/{cid}?force=1")


def test_image_looks_root_owned_and_writes_belong_to_the_mapped_id(remap):
    d, uid_start, gid_start = remap
    cid, _ = _run(d, ["sh", "-c", "id -u; id -g; stat -c '%u:%g' /bin/busybox /etc; touch /made-here"])
    try:
        assert _wait(d, cid) == 0, _logs(d, cid)
        out = _logs(d, cid).split()
        assert out == ["0", "0", "0:0", "0:0"], out    # inside: root, and the image is root's
        # The file it created is the mapped id's on the host's writable layer.
        st, body = d.api("GET", f"/containers/{cid}/json")
        upper = body["GraphDriver"]["Data"]["UpperDir"]
        made = os.stat(os.path.join(upper, "made-here"))
        assert (made.st_uid, made.st_gid) == (uid_start, gid_start)
        # and the image's layer on disk stays root's (idmapped, not chowned)
        lower = body["GraphDriver"]["Data"]["LowerDir"].split(":")[-1]
        assert os.stat(os.path.join(lower, "bin")).st_uid == 0
    finally:
        d.api("DELETE", f"/containers/{cid}?force=1")


def test_userns_host_opts_out(remap):
    d, _, _ = remap
    cid, info = _run(d, ["sleep", "60"], host={"UsernsMode": "host"})
    try:
        pid = info["State"]["Pid"]
        assert os.readlink(f"/proc/{pid}/ns/user") == os.readlink("/proc/self/ns/user")
        assert open(f"/proc/{pid}/uid_map").read().split() == ["0", "0", "4294967295"]
    finally:
        d.api("DELETE", f"/containers/{cid}?force=1")


def test_bad_userns_mode_is_refused(remap):
    d, _, _ = remap
    st, body = d.api("POST", "/containers/create", {"Image": "busybox:latest", "HostConfig": {"UsernsMode": "nope"}})
    assert st == 400 and "invalid USER mode" in body["message"], body


def test_exec_joins_the_user_namespace(remap):
    d, uid_start, _ = remap
    cid, info = _run(d, ["sleep", "60"])
    try:
        r = d.cli("exec", cid, "sh", "-c", "id -u; cat /proc/self/uid_map; touch /from-exec", check=True)
        out = r.stdout.decode().split()
        assert out[:4] == ["0", "0", str(uid_start), "65536"], out
        st, body = d.api("GET", f"/containers/{cid}/json")
        made = os.stat(os.path.join(body["GraphDriver"]["Data"]["UpperDir"], "from-exec"))
        assert made.st_uid == uid_start
    finally:
        d.api("DELETE", f"/containers/{cid}?force=1")


def test_chowned_copy_shifts_owners_and_keeps_modes(tmp_path):
    """The fallback for kernels or filesystems without idmapped mounts (runtime/idmap.py)."""
    need_root()
    from minidocker.namespaces import IdMap
    from minidocker.runtime.idmap import chowned_copy
    src = tmp_path / "layer"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "su").write_text("x")
    os.chown(src / "bin" / "su", 0, 0)
    os.chmod(src / "bin" / "su", 0o4755)
    (src / "home").mkdir()
    os.chown(src / "home", 1000, 1000)
    os.symlink("/bin/su", src / "link")
    uid_map, gid_map = [IdMap(0, 300000, 65536)], [IdMap(0, 400000, 65536)]
    dst = chowned_copy(str(src), uid_map, gid_map)
    assert dst.endswith(".300000.400000")
    su = os.stat(os.path.join(dst, "bin", "su"))
    assert (su.st_uid, su.st_gid, su.st_mode & 0o7777) == (300000, 400000, 0o4755)
    home = os.stat(os.path.join(dst, "home"))
    assert (home.st_uid, home.st_gid) == (301000, 401000)
    assert os.lstat(os.path.join(dst, "link")).st_uid == 300000
    assert os.stat(src / "home").st_uid == 1000          # the original is untouched
    assert chowned_copy(str(src), uid_map, gid_map) == dst   # made once per mapping
    # whiteouts (0/0 character devices) survive the copy
    os.mknod(src / "gone", 0o600 | __import__("stat").S_IFCHR, os.makedev(0, 0))
    dst2 = chowned_copy(str(src), uid_map, [IdMap(0, 500000, 65536)])
    wh = os.lstat(os.path.join(dst2, "gone"))
    assert __import__("stat").S_ISCHR(wh.st_mode) and wh.st_rdev == 0 and wh.st_uid == 300000


def test_commit_records_the_ids_the_container_saw(remap):
    """The committed layer carries container ids (0, 1000), not the remapped host ids its files have
    on disk: run from the new image without remapping (--userns=host), the files are 0:0 and 1000:1000."""
    d, uid_start, _ = remap
    cid, _ = _run(d, ["sh", "-c", "touch /by-root /by-user && chown 1000:1000 /by-user"])
    image = None
    try:
        assert _wait(d, cid) == 0, _logs(d, cid)
        st, body = d.api("POST", f"/commit?container={cid}&repo=remapped-commit&tag=t")
        assert st == 201, body
        image = body["Id"]
        check, _ = _run(d, ["stat", "-c", "%u:%g", "/by-root", "/by-user"], host={"UsernsMode": "host"},
                          image="remapped-commit:t")
        try:
            assert _wait(d, check) == 0, _logs(d, check)
            assert _logs(d, check).split() == ["0:0", "1000:1000"], (_logs(d, check), uid_start)
        finally:
            d.api("DELETE", f"/containers/{check}?force=1")
    finally:
        d.api("DELETE", f"/containers/{cid}?force=1")
        if image:
            d.api("DELETE", "/images/remapped-commit:t")


def test_default_creates_dockremap_with_free_ranges(tmp_path):
    """``--userns-remap default`` on a machine without dockremap: the user is created (useradd) and
    given 65536 subordinate uids and gids after the ranges already taken (usermod), as dockerd does;
    a second resolve reuses them. Runs on a copy of /etc (useradd/usermod --prefix): the host's
    files are never touched."""
    need_root()
    need_tool("useradd")
    from minidocker.daemon import userns
    etc = tmp_path / "etc"
    (etc / "default").mkdir(parents=True)
    for name in ("passwd", "group", "shadow", "gshadow", "login.defs", "default/useradd"):
        if os.path.exists(f"/etc/{name}"):
            text = open(f"/etc/{name}").read()
            if name in ("passwd", "group", "shadow", "gshadow"):   # whatever the host has, no dockremap here
                text = "".join(line for line in text.splitlines(True) if not line.startswith("dockremap:"))
            (etc / name).write_text(text)
    (etc / "subuid").write_text("alice:100000:65536\nbob:165536:65536\n")
    (etc / "subgid").write_text("alice:120000:1000\n")
    host_before = {n: open(f"/etc/{n}").read() for n in ("passwd", "group") if os.path.exists(f"/etc/{n}")}
    first = userns.resolve("default", etc=str(etc))
    assert any(line.startswith("dockremap:") for line in (etc / "passwd").read_text().splitlines())
    assert first["uidMappings"] == [{"containerID": 0, "hostID": 231072, "size": 65536}]   # after bob's
    assert first["gidMappings"] == [{"containerID": 0, "hostID": 121000, "size": 65536}]   # after alice's
    assert userns.resolve("default", etc=str(etc)) == first                               # created once
    assert (etc / "subuid").read_text().count("dockremap:") == 1
    assert {n: open(f"/etc/{n}").read() for n in host_before} == host_before
    with pytest.raises(ValueError, match="no subordinate ids"):
        userns.resolve("bin", etc=str(etc))


def test_build_run_step_layer_records_container_ids(remap, tmp_path):
    """A RUN step on a remapped daemon runs remapped; its layer carries the ids the step saw."""
    d, _, _ = remap
    (tmp_path / "Dockerfile").write_text("FROM busybox:latest\nRUN touch /r && mkdir /u && chown 1000:1000 /u\n")
    r = d.cli("build", "-q", "-t", "remapped-build:t", str(tmp_path))
    assert r.returncode == 0, r.stderr
    try:
        check, _ = _run(d, ["stat", "-c", "%u:%g", "/r", "/u"], host={"UsernsMode": "host"}, image="remapped-build:t")
        try:
            assert _wait(d, check) == 0, _logs(d, check)
            assert _logs(d, check).split() == ["0:0", "1000:1000"], _logs(d, check)
        finally:
            d.api("DELETE", f"/containers/{check}?force=1")
    finally:
        d.api("DELETE", "/images/remapped-build:t")

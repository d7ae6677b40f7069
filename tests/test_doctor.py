"""minidocker doctor: its facts must agree with the kernel's own files, read here independently."""
from __future__ import annotations

import http.server
import json
import os
import socket
import socketserver
import threading

import pytest

from minidocker import doctor


def _mountinfo_cgroups() -> tuple[dict[str, set[str]], list[str]]:
    """From /proc/self/mountinfo, by hand: {v1 mount point: controllers} and the cgroup2 mount points."""
    with open("/proc/cgroups") as f:
        known = {line.split()[0] for line in f if not line.startswith("#") and line.strip()}
    v1, v2 = {}, []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split(" - ")[1].split()
            mountpoint = line.split(" - ")[0].split()[4]
            if fields[0] == "cgroup":
                v1[mountpoint] = set(fields[2].split(",")) & known
            elif fields[0] == "cgroup2":
                v2.append(mountpoint)
    return v1, v2


@pytest.fixture(scope="module")
def info():
    return doctor.collect()


def test_cgroup_layout_and_v1_controllers_match_mountinfo(info):
    v1, v2 = _mountinfo_cgroups()
    if v1 and v2:
        expected = "hybrid"
    elif v1:
        expected = "v1"
    elif v2:
        expected = "v2"
    else:
        expected = "none"
    cg = info["cgroups"]
    assert cg["layout"] == expected
    got = {h["mountpoint"]: set(h["controllers"]) for h in cg["v1"]}
    assert got == v1
    assert [h["mountpoint"] for h in cg["v2"]] == v2


def test_v2_controllers_and_chapter_verdict(info):
    """Each cgroup2 mount lists what its cgroup.controllers says (on this machine: the hybrid layout,
    /sys/fs/cgroup/unified with hugetlb only), and chapter 03 names the layout."""
    cg = info["cgroups"]
    for h in cg["v2"]:
        with open(os.path.join(h["mountpoint"], "cgroup.controllers")) as f:
            assert h["controllers"] == f.read().split()
    if cg["layout"] in ("hybrid", "v1"):
        assert cg["layout"] in info["chapters"]["03"]["why"]
        assert "v1 driver" in info["chapters"]["03"]["why"]


def test_overlay_present_iff_in_proc_filesystems(info):
    with open("/proc/filesystems") as f:
        listed = any(line.split()[-1] == "overlay" for line in f if line.strip())
    assert info["overlayfs"]["supported"] is listed


def test_namespaces_match_proc_self_ns(info):
    expected = sorted(n for n in os.listdir("/proc/self/ns") if not n.endswith("_for_children"))
    assert info["namespaces"]["types"] == expected
    for kind in expected:
        assert info["namespaces"]["ids"][kind] == os.readlink(f"/proc/self/ns/{kind}")


def test_python_and_privileges(info):
    assert info["python"]["os_unshare"] is hasattr(os, "unshare")
    assert info["privileges"]["root"] is (os.geteuid() == 0)


def test_overlay_upper_refused_on_overlay():
    """A state directory on overlayfs (e.g. inside a docker container) cannot hold an overlay upper."""
    mounts = doctor.parse_mountinfo(
        "1 0 0:30 / / rw - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w\n"
        "2 1 0:5 / /dev rw - devtmpfs devtmpfs rw\n")
    ov = doctor.overlay_info("nodev\toverlay\n", mounts, "/var/lib/minidocker-nonexistent/x")
    assert ov["fstype"] == "overlay" and not ov["upper_ok"]
    assert "overlayfs" in ov["problem"]
    ov = doctor.overlay_info("nodev\ttmpfs\n", mounts, "/dev/x")
    assert not ov["supported"] and not ov["upper_ok"]


def test_union_chapter_says_copy_driver_inside_container_on_overlay(info):
    fake = json.loads(json.dumps(info))
    fake["overlayfs"].update(fstype="overlay", upper_ok=False, problem="an overlay upper cannot be on overlayfs itself")
    fake["container"]["inside"] = True
    verdicts = doctor.chapter_verdicts(fake)
    assert verdicts["04"]["status"] == "limited"
    assert "copy driver only" in verdicts["04"]["why"] and "inside a container" in verdicts["04"]["why"]


def test_parse_mountinfo_unescapes_paths():
    (m,) = doctor.parse_mountinfo("40 1 0:9 / /mnt/with\\040space rw shared:1 - tmpfs tmpfs rw,size=4k\n")
    assert m["mountpoint"] == "/mnt/with space" and m["fstype"] == "tmpfs" and m["super_options"] == "rw,size=4k"


def test_dechunk():
    assert doctor._dechunk(b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n") == b"Wikipedia"


def test_daemon_not_running_for_missing_socket(tmp_path):
    d = doctor.daemon_info(f"unix://{tmp_path}/no-such.sock")
    assert d["running"] is False and d["error"]
    assert doctor.describe_daemon(d) == "not running"


def test_daemon_not_running_when_nothing_listens(tmp_path):
    path = str(tmp_path / "dead.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(path)  # bound, never listening: what a crashed daemon leaves behind
        d = doctor.daemon_info(f"unix://{path}")
    assert d["running"] is False and "nothing listens" in d["error"]


# --- a tiny daemon stand-in: an HTTP server on a temporary UNIX socket --------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/_ping":
            body, ctype = b"OK", "text/plain"
        elif self.path == "/info":
            body, ctype = json.dumps({"DockerRootDir": "/tmp/md-root", "ServerVersion": "0.1.0",
                                      "Containers": 0, "Images": 1}).encode(), "application/json"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Api-Version", "1.50")
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # the client address of a UNIX socket is '', which the default chokes on
        pass


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def fake_daemon(tmp_path):
    path = str(tmp_path / "md.sock")
    server = _UnixHTTPServer(path, _Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"unix://{path}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_daemon_running_when_socket_answers(fake_daemon):
    d = doctor.daemon_info(fake_daemon)
    assert d["running"] is True
    assert d["api_version"] == "1.50" and d["root"] == "/tmp/md-root"
    assert doctor.describe_daemon(d) == "running (API 1.50, root /tmp/md-root)"


def test_daemon_host_from_environment(fake_daemon, monkeypatch):
    monkeypatch.setenv("MINIDOCKER_HOST", fake_daemon)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    info = doctor.collect()
    assert info["daemon"]["host"] == fake_daemon and info["daemon"]["running"]
    assert "running (API 1.50" in doctor.report(info)


def test_report_has_every_section(tmp_path):
    info = doctor.collect(daemon_host=f"unix://{tmp_path}/none.sock")
    text = doctor.report(info)
    for section in ("kernel", "cgroups", "overlayfs", "user namespaces", "namespaces", "container",
                    "python", "privileges", "tools", "daemon", "chapters and labs here"):
        assert f"\n{section}\n" in f"\n{text}", section
    for number, topic in doctor.CHAPTERS.items():
        assert f"{number} {topic}" in text
    assert "not running" in text
    assert all(v["status"] in ("runnable", "limited", "not runnable") for v in info["chapters"].values())


def test_main_json(capsys, tmp_path):
    assert doctor.main(["--json", "--host", f"unix://{tmp_path}/none.sock"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) >= {"kernel", "cgroups", "overlayfs", "userns", "namespaces", "container",
                         "python", "privileges", "tools", "daemon", "chapters"}

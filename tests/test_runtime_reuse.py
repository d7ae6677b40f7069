"""The runtime reuses the one copy of each concept: Docker's stream framing (wire.py) and the
mountinfo reader (rootfs.parse_mountinfo, which decodes the octal escapes of mount points)."""
from minidocker import rootfs, wire
from minidocker.runtime import exec as rexec, monitor

# A hybrid host's cgroup mounts, one v1 hierarchy mounted at a path with a space ("\040").
MOUNTINFO = """\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
32 31 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
33 31 0:28 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
40 31 0:35 / /sys/fs/cgroup/my\\040memory rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,memory
41 31 0:36 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:19 - cgroup cgroup rw,cpu,cpuacct
"""


def test_cgroup_mounts_decodes_mount_points(monkeypatch):
    monkeypatch.setattr(rexec, "mountinfo", lambda: rootfs.parse_mountinfo(MOUNTINFO))
    m = rexec.cgroup_mounts()
    assert m[""] == "/sys/fs/cgroup/unified"
    assert m["memory"] == "/sys/fs/cgroup/my memory"
    assert m["name=systemd"] == "/sys/fs/cgroup/systemd"
    assert m["cpu"] == m["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"


def test_cgroup_mounts_on_this_host_names_real_directories():
    import os
    for key, path in rexec.cgroup_mounts().items():
        assert os.path.isdir(path), (key, path)


def test_monitor_frames_with_wire():
    assert monitor.encode_frame is wire.encode_frame
    assert not hasattr(monitor, "frame")
    assert (monitor.STDOUT, monitor.STDERR) == (wire.STDOUT, wire.STDERR)

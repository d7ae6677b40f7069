"""mydocker — your own container engine, built from your solutions of labs 01–05 (the capstone).

    ./mydocker run [--hostname H] [--pids-limit N] [--memory BYTES] [--keep DIR] IMAGE CMD [ARG...]
    ./mydocker diff DIR          # what a container kept with --keep DIR changed (A/C/D, as docker diff)
    ./mydocker layer IMAGE PATH  # which layer PATH comes from (0 = the bottom layer), or "absent"

``labs`` below is your lab solutions, loaded from your copies in ~/minidocker-labs/ (``load_labs``;
``MYDOCKER_LABS=reference`` uses minidocker's own modules instead, to test this file alone):

    labs.ns      lab 01: spawn(argv, namespaces, pass_fds=...) -> Process (.pid, .wait())
    labs.rootfs  lab 02: setup_rootfs(kernel, RootfsSpec(rootfs, mounts=[Mount(...)])), Mount, RootfsSpec
    labs.cg      lab 03: detect() -> Layout (.v1, .unified), join(layout, path, pid), set_limits(layout, path, memory, pids)
    labs.union   lab 04: overlay_options(lowers_top_first, upper, work) -> str, lookup(layers_top_first, path)
    labs.cow     lab 05: overlay_changes(upper, lowers_top_first) -> [Change(path, kind)]

An IMAGE is a directory ``IMAGE/layers/NN/``, bottom layer first (``layers_of(image)``). Write the four
functions; the command line, the loading and the image format are given. Check with
``minidocker lab check capstone`` (stage by stage, like the real thing).
"""
from __future__ import annotations

import sys

from minidocker.capstone import layers_of, main  # noqa: F401  (given: the image format, the command line)


def run(a, labs) -> int:
    """``mydocker run``: ``a.image``, ``a.command`` (argv), ``a.hostname``, ``a.pids_limit``, ``a.memory``
    (bytes), ``a.keep`` (a state directory to keep, or None). Returns the command's exit code."""
    # 1. a state directory (a.keep or a temporary one) with upper/, work/, rootfs/ and what pid 1 needs
    # 2. labs.cg.detect(); a cgroup of your own under $MYDOCKER_CGROUP_PARENT (default "mydocker")
    # 3. labs.ns.spawn([sys.executable, __file__, "init", STATE, str(FD)], [...namespaces...], pass_fds=(FD,))
    #    where FD is the read end of a pipe: pid 1 waits on it until it is in its cgroup
    # 4. labs.cg.join(...), labs.cg.set_limits(...), then go
    # 5. wait; remove the cgroup (and the state directory unless --keep) whatever happened
    raise NotImplementedError("TODO: run — state directory, cgroup, spawn pid 1, join, limits, wait, clean up")


def init(state: str, go_fd: int, labs) -> None:
    """pid 1 of the container (``mydocker init STATE FD``, started by ``run``): wait on ``go_fd``, set
    the hostname, make the overlay of the image's layers the root filesystem, exec the command."""
    raise NotImplementedError("TODO: init — wait, sethostname, setup_rootfs with an overlay, execvp")


def diff(state: str, labs) -> int:
    """``mydocker diff DIR``: one ``KIND /path`` line per change in the kept upper layer."""
    raise NotImplementedError("TODO: diff — overlay_changes of the kept upper against the image's layers")


def layer(image: str, path: str, labs) -> int:
    """``mydocker layer IMAGE PATH``: print the index of the layer PATH comes from (0 = bottom) or absent."""
    raise NotImplementedError("TODO: layer — lookup through the layers, top first")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], default_labs="workspace", glue=sys.modules[__name__]))

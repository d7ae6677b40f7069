"""The engine: the daemon's one owner of containers, put together from one module per idea.

What this teaches
-----------------
The daemon is the single owner of state. It validates a request, records the new state atomically
(temp + rename; fsync'ed where it must survive a power loss), and asks the runtime to do the
kernel work. It keeps no kernel logic of its own. A container moves through docker's states (``rules.TRANSITIONS``; every move goes through
``state.transition``, which checks the table, persists and emits the event)::

    created --start--> running --exit--> exited --start--> running ...
       \\______________________________ rm ___________________________/--> removing --> (removed)

Waiting is the interesting part: ``docker run`` asks to be told of the *next* exit (``wait``
with ``condition=next-exit``) before it starts the container, and ``--rm`` waits for ``removed``.
Each container keeps futures for those, completed by a watcher task that holds a ``wait``
connection on the container's monitor — and that can be re-established by a restarted daemon.

Read it in this order, one idea per module (each is a mixin of :class:`Engine`):

==================  ================================================================================
``record.py``       the container record: in memory (``Container``) and on disk (bundle, state.json)
``create.py``       ``docker create`` and ``rename``: request -> config -> snapshots -> bundle
``snapshots.py``    the image's layers, the init layer, the writable layer; the crash sweep
``lifecycle.py``    start, the exit watcher, kill, stop, restart, rm, prune
``restart.py``      restart policies and their back-off
``streams.py``      attach (a client's socket piped to the monitor) and wait
``views.py``        ``docker inspect`` / ``docker ps`` JSON and ps filters
``recovery.py``     daemon start: containers read back and reconciled with what still runs
==================  ================================================================================

This module keeps what all of them share: the stores, the lookup by id or name, and the one
path of a status change (:meth:`Engine.transition`) with its event (:meth:`Engine.emit`).
"""
from __future__ import annotations

import os
import time

from ..images.store import ImageStore
from ..volumes import VolumeStore
from . import state as states
from .create import Create
from .errors import InvalidRequest, NotFound
from .events import Events
from .lifecycle import Lifecycle
from .record import Container
from .recovery import Recovery
from .restart import Restarts
from .snapshots import Snapshots
from .streams import Streams
from .views import Views


class Engine(Create, Lifecycle, Restarts, Streams, Views, Snapshots, Recovery):
    """Every container of one daemon root, and the stores they draw on (images, snapshots, volumes)."""

    def __init__(self, root: str, driver: str = "overlay", cgroup_parent: str = "minidocker",
                 network=None, userns_remap: dict | None = None):
        self.root = root
        self.userns_remap = userns_remap  # daemon/userns.resolve(): maps for every container
        self.cgroup_parent = cgroup_parent
        self.containers: dict[str, Container] = {}
        self.driver = driver
        self.snapshotter = self.snapshotter_for(driver)
        self.volumes = VolumeStore(os.path.join(root, "volumes"))
        # Layers are extracted into the snapshotter once, when an image arrives (images/unpack.py).
        self.images = ImageStore(os.path.join(root, "images"), snapshotter=self.snapshotter, init_layers=True)
        self.events = Events()
        self.execs: dict = {}  # exec id -> daemon.execs.Exec (in memory, as dockerd keeps them)
        os.makedirs(os.path.join(root, "containers"), exist_ok=True)
        self.started = time.time()
        from ..network import Settings
        from .networks import Glue  # chapter 11: networks, endpoints, published ports
        self.net = Glue(self, network or Settings(state_dir=os.path.join(root, "network")))

    def get(self, ref: str) -> Container:
        """By full id, by name (with or without '/'), or by an unambiguous id prefix (docker's order)."""
        if ref in self.containers:
            return self.containers[ref]
        name = ref.lstrip("/")
        for c in self.containers.values():
            if c.name == name:
                return c
        matches = [c for cid, c in self.containers.items() if cid.startswith(ref)] if ref else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidRequest(f"multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    def transition(self, c: Container, action: str, fields: dict | None = None, **attrs) -> str:
        """The one way a container changes status (``state.transition``): table, persist, event."""
        return states.transition(c, action, self.emit, fields, **attrs)

    def emit(self, c: Container, action: str, **extra) -> None:
        attrs = {**c.cfg.labels, "image": c.cfg.image_ref, "name": c.name, **extra}
        self.events.emit("container", action, c.id, attrs)

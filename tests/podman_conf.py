"""podman with its own storage and configuration under one directory (vfs, no network namespace
config of the host, cgroupfs, no events log): the environment to run it with."""
from __future__ import annotations

import os


def podman_env(conf, **extra) -> dict:
    conf.mkdir(exist_ok=True)
    (conf / "storage.conf").write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{conf}/graph"\n'
                                       f'runroot = "{conf}/run"\n')
    (conf / "containers.conf").write_text(f'[containers]\nnetns = "none"\n[network]\nnetwork_config_dir'
                                          f' = "{conf}/net"\n[engine]\ncgroup_manager = "cgroupfs"\n'
                                          f'events_logger = "none"\ntmp_dir = "{conf}/tmp"\n')
    return dict(os.environ, CONTAINERS_CONF=str(conf / "containers.conf"),
                CONTAINERS_STORAGE_CONF=str(conf / "storage.conf"), **extra)

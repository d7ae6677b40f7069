#!/usr/bin/env bash
# Install the reference tools the benchmarks compare minidocker with. Idempotent: installs only
# what is missing, changes nothing else on the host.
#
#   bash bench/setup.sh          # then: make bench   (or .venv/bin/python bench/run.py)
#
# Notes for this host (see /work/shared/notes/host-facts.md); bench/run.py applies all of them itself,
# with every piece of state in temporary directories, so nothing here is configured globally:
#   - runc works as is.
#   - crun refuses hybrid cgroups (v1 controllers + cgroup2 at /sys/fs/cgroup/unified): run.py runs it
#     in a private mount namespace with /sys/fs/cgroup/unified unmounted (the host keeps its mount).
#   - podman needs cgroup_manager="cgroupfs", runtime="runc", default_ulimits nofile=20000 (root here
#     lacks CAP_SYS_RESOURCE, so raising the hard limit fails) and --network=none: its default bridge
#     network rewrites the host's nftables and ip_forward. run.py writes its own containers.conf and
#     storage.conf into a temporary directory and points CONTAINERS_CONF / CONTAINERS_STORAGE_CONF at
#     them; the host's /etc/containers is never edited.
#   - hyperfine is not used by run.py (it times itself, to get p90 and JSON alike for every tool); it is
#     here to cross-check a number by hand, e.g. hyperfine -N 'runc --root /tmp/r run -b BUNDLE x'.
set -euo pipefail

PACKAGES=(runc crun podman skopeo umoci hyperfine)

if [ "$(id -u)" -ne 0 ]; then
  echo "bench/setup.sh: run as root (apt-get install)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "bench/setup.sh: all reference tools present (${PACKAGES[*]})"
else
  echo "bench/setup.sh: apt-get install ${missing[*]}"
  apt-get update -qq
  # --no-install-recommends: podman's recommends (slirp4netns, fuse-overlayfs, dbus-user-session, ...)
  # serve rootless and networked use, which the benchmark does not need.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

for t in runc crun podman skopeo umoci hyperfine; do
  printf '  %-10s %s\n' "$t" "$(command -v "$t" || echo 'not installed')"
done

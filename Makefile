# minidocker — one command to set up and run, one to set up and test (Debian 12, as root).
#   make run    set up, start minidockerd if it is not running, run a first container
#   make test   set up, run the whole test suite (what .ci/run does)
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the project needs. busybox-static: the offline base image; graphviz: diagrams;
# iproute2: networking chapter and checks; python3-venv: the venv; qemu-system-x86: the cgroup v2
# guest test (tests/guest/vm.py; it downloads a Debian kernel package into .cache/cgroup-v2 once);
# docker-registry, apache2-utils (htpasswd), openssl: the registry chapter's tests; skopeo, umoci,
# oci-image-tool, podman: interop tests (podman only saves an image there, with its own storage);
# libseccomp2: the seccomp compiler behind pyseccomp (security chapter).
APT_PACKAGES := busybox-static graphviz iproute2 nftables python3-venv python3-dev gcc make ca-certificates qemu-system-x86 \
                docker-registry apache2-utils skopeo umoci openssl oci-image-tool podman libseccomp2
STAMP_APT := $(VENV)/.apt-$(shell echo $(APT_PACKAGES) | md5sum | cut -c1-8)
STAMP_PIP := $(VENV)/.pip-$(shell cat pyproject.toml | md5sum | cut -c1-8)

.PHONY: setup run test test-fast daemon stop bench clean-state doctor

setup: $(STAMP_APT) $(STAMP_PIP) $(BIN)/docker
	@# The daemon's socket is 0660 root:minidocker: members of this group may use the API (= root).
	@getent group minidocker >/dev/null || groupadd --system minidocker
	@echo "setup done: activate with 'source $(BIN)/activate'"

# Packages are installed with a temporary policy-rc.d, so that no package (docker-registry, say)
# starts a service of its own on this machine; it is removed again afterwards.
$(STAMP_APT):
	@mkdir -p $(VENV)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install $$missing"; \
	  guard=; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\n# minidocker setup: no package may start a service\nexit 101\n' > /usr/sbin/policy-rc.d; \
	    chmod +x /usr/sbin/policy-rc.d; guard=1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; rc=$$?; \
	  [ -n "$$guard" ] && rm -f /usr/sbin/policy-rc.d; [ $$rc = 0 ] || exit $$rc; \
	fi
	@touch $@

$(STAMP_PIP): $(STAMP_APT) pyproject.toml
	@[ -x $(BIN)/python ] || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# editable_mode=compat: a plain path entry instead of an import hook, which would cost every
	# `minidocker` command ~30 ms of start-up; compileall: start-up without compiling (even when
	# PYTHONDONTWRITEBYTECODE is set).
	$(BIN)/pip install -q -e '.[dev]' --config-settings editable_mode=compat
	$(BIN)/python -m compileall -q minidocker >/dev/null
	$(BIN)/python -m ipykernel install --sys-prefix --name minidocker --display-name "minidocker (venv)" >/dev/null
	@rm -f $(VENV)/.pip-*; touch $@

# The real docker client, for the compatibility tests. Use the one on PATH if there is one; otherwise
# take only /usr/bin/docker out of Debian's docker.io package (no daemon, no service, no firewall change).
$(BIN)/docker: $(STAMP_PIP)
	@if command -v docker >/dev/null 2>&1 && [ "$$(command -v docker)" != "$(CURDIR)/$(BIN)/docker" ]; then \
	  ln -sf "$$(command -v docker)" $@; \
	else \
	  tmp=$$(mktemp -d) && (cd $$tmp && apt-get download -qq docker.io >/dev/null && dpkg-deb -x docker.io_*.deb x) \
	  && cp $$tmp/x/usr/bin/docker $@ && rm -rf $$tmp; \
	fi
	@$@ --version

daemon: setup
	@$(BIN)/minidocker info >/dev/null 2>&1 || { \
	  echo "starting minidockerd (log: /var/log/minidockerd.log)"; \
	  nohup $(BIN)/minidockerd >/var/log/minidockerd.log 2>&1 & \
	  for i in $$(seq 50); do $(BIN)/minidocker info >/dev/null 2>&1 && break; sleep 0.1; done; }

run: daemon
	$(BIN)/minidocker doctor || true
	$(BIN)/minidocker images
	@echo '$$ minidocker run --rm --hostname demo busybox sh -c "echo pid=\$$\$$; hostname; ps; ls /sys/class/net"'
	@$(BIN)/minidocker run --rm --hostname demo busybox sh -c 'echo "pid=$$$$ (the workload is pid 1)"; echo "hostname=$$(hostname)"; ps; echo "network interfaces:"; ls /sys/class/net'

# Stop the daemon started by `make run` (by the pid recorded in its lock file); containers keep running.
stop:
	@pid=$$(cat /var/lib/minidocker/minidockerd.lock 2>/dev/null); \
	if [ -n "$$pid" ] && kill -0 $$pid 2>/dev/null; then kill $$pid && echo "stopped minidockerd ($$pid)"; else echo "minidockerd is not running"; fi

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

doctor: setup
	$(BIN)/minidocker doctor

bench: setup
	bash bench/setup.sh
	$(BIN)/python bench/run.py

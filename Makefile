# minidocker — one command to set up and run, one to set up and test (Debian 12, as root).
#   make run    set up, start minidockerd if it is not running, run a first container
#   make test   set up, run the whole test suite (what .ci/run does)
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the notebooks and labs need (`make student`). busybox-static: the offline base
# image; graphviz: diagrams; iproute2, nftables: networking chapter and checks; python3-venv: the venv;
# docker-registry, apache2-utils (htpasswd), openssl: the registry chapter (notebook 07, lab 07);
# libseccomp2: the seccomp compiler behind pyseccomp, gcc: the static attack probe (security chapter);
# nftables: the networking chapter's packet filter (one table minidocker owns);
# btrfs-progs: the btrfs storage driver on a loop device (volumes and storage chapter, notebook 12).
STUDENT_APT_PACKAGES := busybox-static graphviz iproute2 nftables python3-venv ca-certificates make \
                        docker-registry apache2-utils openssl libseccomp2 gcc btrfs-progs
# Everything the whole test suite needs (`make setup`): the above, plus qemu-system-x86 for the cgroup
# v2 guest test (tests/guest/vm.py; it downloads a Debian kernel package into .cache/cgroup-v2 once);
# skopeo, umoci, oci-image-tool, podman: interop tests (podman only saves an image there, with its own
# storage); runc, crun: the reference OCI runtimes beside minidocker-runtime (tests/test_runtime_cli.py,
# notebook 09, bench); python3-dev (and gcc, above): building wheels.
APT_PACKAGES := $(STUDENT_APT_PACKAGES) python3-dev qemu-system-x86 skopeo umoci oci-image-tool podman runc crun
STAMP_APT := $(VENV)/.apt-$(shell echo $(APT_PACKAGES) | md5sum | cut -c1-8)
STAMP_STUDENT_APT := $(VENV)/.apt-student-$(shell echo $(STUDENT_APT_PACKAGES) | md5sum | cut -c1-8)
STAMP_PIP := $(VENV)/.pip-$(shell cat pyproject.toml | md5sum | cut -c1-8)
STAMP_STUDENT_PIP := $(VENV)/.pip-student-$(shell cat pyproject.toml | md5sum | cut -c1-8)
# The notebooks' kernel (docs/COURSE.md): every notebook names it in its metadata.
KERNEL_INSTALL := $(BIN)/python -m ipykernel install --sys-prefix --name minidocker --display-name "minidocker (venv)"
JUPYTER_PORT ?= 8888

.PHONY: setup student jupyter run test test-fast daemon stop bench clean-state doctor book

setup: $(STAMP_APT) $(STAMP_PIP) $(BIN)/docker
	@# The daemon's socket is 0660 root:minidocker: members of this group may use the API (= root).
	@getent group minidocker >/dev/null || groupadd --system minidocker
	@echo "setup done: activate with 'source $(BIN)/activate'"

# The course only (notebooks and labs), on a throwaway Debian 12 VM, as root: README.md, "Start here".
student: $(STAMP_STUDENT_APT) $(STAMP_STUDENT_PIP)
	@echo "student setup done: 'source $(BIN)/activate', then 'make jupyter' (kernel: minidocker (venv))"

# Jupyter as root (the notebooks make namespaces and mounts) on the VM's loopback only: reach it with
# `ssh -L $(JUPYTER_PORT):127.0.0.1:$(JUPYTER_PORT) VM` and open the URL it prints.
jupyter: $(STAMP_STUDENT_PIP)
	$(BIN)/jupyter lab --allow-root --no-browser --ip 127.0.0.1 --port $(JUPYTER_PORT) --notebook-dir notebooks

# Packages are installed with a temporary policy-rc.d, so that no package (docker-registry, say)
# starts a service of its own on this machine; it is removed again afterwards.
$(STAMP_APT): PACKAGES = $(APT_PACKAGES)
$(STAMP_STUDENT_APT): PACKAGES = $(STUDENT_APT_PACKAGES)
$(STAMP_APT) $(STAMP_STUDENT_APT):
	@mkdir -p $(VENV)
	@missing=$$(for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install $$missing"; \
	  guard=; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\n# minidocker setup: no package may start a service\nexit 101\n' > /usr/sbin/policy-rc.d; \
	    chmod +x /usr/sbin/policy-rc.d; guard=1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; rc=$$?; \
	  [ -n "$$guard" ] && rm -f /usr/sbin/policy-rc.d; [ $$rc = 0 ] || exit $$rc; \
	fi
	@touch $@

# The venv with the package and the extra $(1) (dev: everything; student: the course only), and the
# notebooks' kernel. editable_mode=compat: a plain path entry instead of an import hook, which would
# cost every `minidocker` command ~30 ms of start-up; compileall: start-up without compiling (even
# when PYTHONDONTWRITEBYTECODE is set).
define PIP_INSTALL
	@[ -x $(BIN)/python ] || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[$(1)]' --config-settings editable_mode=compat
	$(BIN)/python -m compileall -q minidocker >/dev/null
	$(KERNEL_INSTALL) >/dev/null
endef

$(STAMP_PIP): $(STAMP_APT) pyproject.toml
	$(call PIP_INSTALL,dev)
	@rm -f $(VENV)/.pip-*; touch $@ $(STAMP_STUDENT_PIP)

$(STAMP_STUDENT_PIP): $(STAMP_STUDENT_APT) pyproject.toml
	$(call PIP_INSTALL,student)
	@touch $@

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

# The course rendered for readers who run nothing (minidocker/book.py): runs every notebook as root
# (as the suite does) into docs/book/ and refreshes the gallery diagrams/gallery/. Commit both.
# `make book CHAPTERS="03 10"` re-renders only those chapters.
book: setup
	PYTHONPATH=$(CURDIR) $(BIN)/python -m minidocker.book $(CHAPTERS)

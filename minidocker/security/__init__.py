"""Chapter 10, security: attack a container, then defend it, one kernel layer at a time.

What this teaches
-----------------
Namespaces (chapter 1) give a container its own *view* of the system; they do not take away root's
*power*. A process that is uid 0 with every capability, in new namespaces, can still: create the
host's disk as a device node and open it, or mount it with the new mount API (fsopen/fsmount);
open any host file by handle through a bind-mounted file (open_by_handle_at, "shocker"); write
``/proc/sys/kernel/core_pattern`` so the host runs its program as root; remount ``/sys``
read-write; mount its own cgroupfs and raise its own limits; read the host's keys. The chapter's
method is the notebook's: run each attack, watch it succeed, then switch on the layer that stops it
and watch it fail with an errno, and know *which* layer said no.

The layers, one module each, applied by pid 1 of the container (the runtime's checklist):

=====================  =====================================================  ==================
module                 what it takes away                                      errno of the attack
=====================  =====================================================  ==================
:mod:`.capabilities`   root's power, but for 14 capabilities (Docker's set)    EPERM
:mod:`.seccomp`        system calls a container never needs (mount, bpf,       EPERM (ENOSYS for
                       keyctl, unshare, ...), tied to the capabilities         clone3)
:mod:`.masks`          /proc and /sys files that leak or change the host       EROFS, empty reads
:mod:`.devices`        opening device nodes other than the default ones        EPERM
:mod:`.sysctls`        sysctls that are not namespaced (validation)            refused at create
=====================  =====================================================  ==================

Each defence is *redundant* with another on purpose: without CAP_SYS_ADMIN ``mount`` fails, and
seccomp refuses it before the capability is even checked; the device cgroup stops what CAP_MKNOD
permits. ``--privileged`` turns them all off; ``--cap-add`` turns on one capability and the
seccomp rules tied to it.

Everything that changes kernel state goes through the kernel layer (:mod:`minidocker.kernel`:
capget/capset, prctl, seccomp_load, bpf, keyctl), so a :class:`~minidocker.kernel.Recorder` dry run
shows the exact calls. The modules read OCI runtime-spec shapes (config-linux.md), never Docker's
HostConfig: the daemon translates ``--cap-add`` and friends into OCI before the runtime sees them.
"""

"""minidocker: a small, complete container engine to read chapter by chapter.

Reading order (imports point down only):
kernel -> namespaces -> rootfs -> cgroups -> unionfs -> cow -> images -> registry -> network
-> runtime -> daemon -> cli; diagrams draws any of them from live kernel state.
"""
__version__ = "0.1.0"

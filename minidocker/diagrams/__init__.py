"""Diagrams drawn from live state (namespaces, mounts, cgroups, layers, the state machine) for the
notebooks, the book and ``diagrams/README.md``."""

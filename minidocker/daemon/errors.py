"""The engine's errors: each one is an HTTP status of the Docker Engine API.

What this teaches
-----------------
The engine knows nothing of HTTP; it raises one of these and ``api.errors`` turns it into dockerd's
status code and message body (moby's ``errdefs``: ``NotFound``, ``InvalidParameter``, ``Conflict``,
``NotModified``). A handler never picks a status code for an engine failure itself.
"""
from __future__ import annotations


class NotFound(LookupError):
    """404: no such container (or other object)."""


class InvalidRequest(ValueError):
    """400: the request itself is wrong (a bad name, signal, policy, filter ...)."""


class Conflict(Exception):
    """409: the container's state forbids the request."""


class NotModified(Exception):
    """304: the container already is where the request would take it."""


class StartError(Exception):
    """400: the runtime could not start the container (dockerd's wording of the runtime's error)."""

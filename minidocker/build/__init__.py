"""Chapter 13: building images from a Dockerfile.

What this teaches
-----------------
``docker build`` is a loop over the image and container machinery of the earlier chapters:
the client sends a *context* (a tar, context.py), the daemon parses the Dockerfile
(dockerfile.py: Docker's reference syntax and variable substitution), and the classic builder
(builder.py) runs each instruction -- a container for RUN, a copy into a writable snapshot for
COPY/ADD, a config change for the rest -- committing one image per step and reusing earlier
steps from its cache. Multi-stage builds (``FROM ... AS name``, ``COPY --from``, ``--target``)
are stages of the same loop.

Modules: dockerfile (parse, expand), context (.dockerignore, context tar, checksums),
builder (stages, cache, instructions). The daemon's ``POST /build`` (daemon/api_build.py)
gives the builder its one backend call: running a container.

The package imports nothing eagerly: the CLI uses only context.py (standard library).
"""

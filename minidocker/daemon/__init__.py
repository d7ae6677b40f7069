"""The daemon, chapter 8: minidockerd serving the Docker Engine API v1.50 on a UNIX socket.

Start at ``engine.py`` (the container engine, one module per idea), then ``api.py`` (the routes).
"""

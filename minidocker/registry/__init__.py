"""The registry chapter: how images travel (OCI distribution-spec, docker's token auth).

Read in this order:

* auth.py      -- WWW-Authenticate challenges, Basic and Bearer tokens, ~/.docker/config.json
* transport.py -- HTTP(S) to one registry: scheme, auth, redirects, retries (stdlib http.client)
* client.py    -- pull (manifest, index -> platform, parallel verified blob downloads) and push
* server.py    -- a small registry: `minidocker registry serve`

Nothing is imported here, so that the CLI can import ``minidocker.registry.auth`` alone (stdlib only).
"""

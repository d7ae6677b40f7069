"""The ``minidocker`` command line: docker's verbs and flags, spoken to minidockerd over its API.

It makes no syscall of its own (the handbook): every verb is a request to the daemon (``client.py``).
"""

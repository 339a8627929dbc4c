"""``mnn-stress repro``: a standalone script that recreates one variant (``script.py`` is its
template), and the runs that say how often it reproduces."""

"""Benchmarks for optout (``make bench`` = ``python -m bench``). Not tests: nothing here is asserted.

Layout: ``core.py`` generates the data, runs each stage in its own process (so its peak RSS is its
own) and writes ``bench/results.json``; ``child.py`` is what runs inside that process; each stage
is one module in ``stages/`` (see ``stages/__init__.py`` for the four names a stage defines).
"""

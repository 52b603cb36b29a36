"""Bench stage: which artifacts a run holds, and their latency, size and F1 side by side."""

from ecgtool.core.api import make_callable

make_callable(__name__, "ecgtool.bench.runner:bench")  # ecgtool.bench(...) calls bench

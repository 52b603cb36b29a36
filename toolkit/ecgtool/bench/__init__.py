"""Bench stage: which artifacts a run holds, and their latency, size and F1 side by side."""

"""Matplotlib without a screen, and the one way figures are saved (atomically, tight, closed after)."""

from __future__ import annotations

import os
from pathlib import Path


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, dpi: int | None = None) -> Path:
    """Write `fig` as PNG to `path` atomically (at `dpi`, else the figure's own) and close it."""
    from ecgtool.core.files import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi or "figure")
    pyplot().close(fig)
    return Path(path)

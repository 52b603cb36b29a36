"""`ecgtool models`: the registered family with parameters and MACs."""

from __future__ import annotations

import click

from ecgtool.models import DEPTHS, ModelConfig, get_model, list_models, model_stats
from ecgtool.core.ui import print_table, quiet_option


def model_table(width: int = 64, length: int = 2000, in_channels: int = 1, num_classes: int = 7) -> list[dict]:
    """One row per registered model: block kind, parameters and MACs for one [1, C, length] input."""
    rows = []
    for name in list_models():
        model = get_model(name, width=width, in_channels=in_channels, num_classes=num_classes)
        cfg: ModelConfig = model.config
        stats = model_stats(model, length=length)
        rows.append({
            "model": name, "arch": cfg.arch, "depth": cfg.depth, "block": DEPTHS[cfg.depth][0], "width": width,
            "params": stats["params"], "params_M": round(stats["params"] / 1e6, 3),
            "MACs_M": round(stats["macs"] / 1e6, 1),
        })
    return rows


@click.command("models")
@click.option("--width", default=64, show_default=True, help="Base channel width.")
@click.option("--length", default=2000, show_default=True, help="Input length in samples (10 s at 200 Hz).")
@click.option("--in-channels", default=1, show_default=True, help="Input leads (1 = lead II, 12 = all).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@quiet_option
def models_command(width: int, length: int, in_channels: int, as_json: bool) -> None:
    """List the registered model family with parameters and MACs."""
    rows = model_table(width=width, length=length, in_channels=in_channels)
    if as_json:
        import json

        click.echo(json.dumps(rows, indent=2))
    else:
        print_table(rows, ["model", "block", "width", "params_M", "MACs_M"],
                    title=f"ecgtool model family (input {in_channels} x {length})")

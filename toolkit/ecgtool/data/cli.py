"""`ecgtool data {synth,import,info}`: each subcommand lives beside its library function."""

from __future__ import annotations

import click

from ..cli import LazyGroup


@click.group("data", cls=LazyGroup, commands={
    "synth": "ecgtool.data.synth:synth_command",
    "import": "ecgtool.data.importers:import_command",
    "info": "ecgtool.data.info:info_command",
    "merge": "ecgtool.data.merge:merge_command",
})
def data_group() -> None:
    """Make, import and inspect prepared datasets."""

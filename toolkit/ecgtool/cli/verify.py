"""`ecgtool verify RUN`: check every artifact of a run against manifest.json (SHA-256 and size)."""

from __future__ import annotations

import click

from ecgtool.core.manifest import verify_manifest
from ecgtool.core.ui import print_table, quiet_option


@click.command("verify")
@click.argument("run", type=click.Path(file_okay=False))
@quiet_option
def verify_command(run: str) -> None:
    """Check every artifact listed in RUN/manifest.json; exit 1 if any is missing or changed."""
    rows = verify_manifest(run)
    print_table(rows, ["artifact", "status"], title=f"{run}/manifest.json")
    bad = [r for r in rows if r["status"] != "ok"]
    if bad:
        raise click.exceptions.Exit(1)

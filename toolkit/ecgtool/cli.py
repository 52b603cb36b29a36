"""The `ecgtool` command line: a thin shell that loads each stage's Click command on demand.

Business logic lives in the stage modules; each defines its command at the bottom. Commands are
imported lazily so that `ecgtool --help` and light commands do not pay for every import.
"""

from __future__ import annotations

import importlib
import sys

import click

from . import __version__
from .errors import EcgtoolError
from .ui import quiet_option

#: command name -> "module:attribute" of its Click command
COMMANDS: dict[str, str] = {
    "data": "ecgtool.data.cli:data_group",
    "models": "ecgtool.models_cli:models_command",
    "train": "ecgtool.train:train_command",
    "evaluate": "ecgtool.evaluate:evaluate_command",
    "prune": "ecgtool.prune:prune_command",
    "quantize": "ecgtool.quantize:quantize_command",
    "export": "ecgtool.export:export_command",
    "bench": "ecgtool.bench:bench_command",
    "report": "ecgtool.report:report_command",
    "pipeline": "ecgtool.pipeline:pipeline_command",
    "predict": "ecgtool.deploy:predict_command",
    "package": "ecgtool.deploy:package_command",
    "distill": "ecgtool.distill:distill_command",
    "search": "ecgtool.search:search_command",
    "verify": "ecgtool.verify:verify_command",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported when used; ecgtool errors become exit codes 1 or 2."""

    def __init__(self, *args, commands: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = COMMANDS if commands is None else commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in self.lazy_commands if self._load(name) is not None)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return self._load(name)

    def _load(self, name: str) -> click.Command | None:
        target = self.lazy_commands.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ModuleNotFoundError, AttributeError) as exc:
            # A stage that is not built yet is simply not offered; a broken import elsewhere still raises.
            if isinstance(exc, ModuleNotFoundError) and exc.name and not exc.name.startswith("ecgtool"):
                raise
            return None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EcgtoolError as exc:
            click.secho(f"ecgtool: error: {exc}", err=True, fg="red")
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("ecgtool: interrupted", err=True)
            sys.exit(130)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="ecgtool")
@quiet_option
def main() -> None:
    """ecgtool: train, prune, quantise, compile and benchmark ECG rhythm classifiers for edge devices."""


if __name__ == "__main__":
    main()

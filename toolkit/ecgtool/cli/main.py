"""The `ecgtool` command line: a thin shell that loads each stage's Click command when it is used.

Each command is declared here with its one-line help, so `ecgtool --help` lists every command
without importing any stage (no torch, onnx or scipy); the stage module is imported only to run the
command or show its own --help. A command whose module fails to import raises, never vanishes.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from ecgtool import __version__
from ecgtool.core.errors import EcgtoolError
from ecgtool.core.ui import quiet_option

#: command name -> ("module:attribute" of its Click command, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("ecgtool.cli.main:data_group", "Make, import and inspect prepared datasets."),
    "models": ("ecgtool.models.cli:models_command", "The registered model family with parameters and MACs."),
    "train": ("ecgtool.train.run:train_command", "Train models (SE-ResNet, ResNet, RR baseline) into a run folder."),
    "evaluate": ("ecgtool.evaluate.artifact:evaluate_command", "Score any artifact on a prepared dataset split."),
    "prune": ("ecgtool.compress.prune:prune_command", "Structured channel pruning of a model folder, then fine-tuning."),
    "quantize": ("ecgtool.export.int8:quantize_command", "Static INT8 (QDQ) quantisation with ONNX Runtime."),
    "export": ("ecgtool.export.driver:export_command", "Export a model folder to ONNX, OpenVINO or TensorRT, checked."),
    "bench": ("ecgtool.bench.runner:bench_command", "Latency, size and F1 of every artifact side by side."),
    "report": ("ecgtool.report.build:report_command", "Size-accuracy report (HTML + markdown) of a benched run."),
    "pipeline": ("ecgtool.pipeline.run:pipeline_command", "Everything from data to report, from one YAML config."),
    "predict": ("ecgtool.deploy.predict:predict_command", "Rhythm per window of ECG records with any artifact."),
    "adapt": ("ecgtool.train.adapt:adapt_command", "AdaBN: adapt a model to a device from its (unlabelled) windows."),
    "package": ("ecgtool.deploy.package:package_command", "A deploy bundle that runs without torch or ecgtool."),
    "distill": ("ecgtool.train.distill:distill_command", "Knowledge distillation from any artifact into a small student."),
    "search": ("ecgtool.search.budget:search_command", "Models that fit a latency or size budget on this machine."),
    "verify": ("ecgtool.cli.verify:verify_command", "Check every artifact of a run against manifest.json."),
}

DATA_COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("ecgtool.data.synth:synth_command", "Write a synthetic prepared dataset of the seven rhythms."),
    "import": ("ecgtool.data.importers:import_command", "Import a PhysioNet collection into a prepared dataset."),
    "info": ("ecgtool.data.info:info_command", "What a prepared dataset holds: counts per class and split."),
    "merge": ("ecgtool.data.merge:merge_command", "Add records (e.g. synthetic) to a dataset's training split."),
    "thin": ("ecgtool.data.thin:thin_command", "Keep every N-th window of each record in train/val (test whole)."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported when used; ecgtool errors become exit codes 1 or 2."""

    def __init__(self, *args, commands: dict[str, tuple[str, str]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = COMMANDS if commands is None else commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.lazy_commands)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = self.lazy_commands.get(name)
        if target is None:
            return None
        module, attr = target[0].split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from the declared help lines, importing nothing."""
        rows = [(name, self.lazy_commands[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EcgtoolError as exc:
            click.secho(f"ecgtool: error: {exc}", err=True, fg="red")
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("ecgtool: interrupted", err=True)
            sys.exit(130)
        except OSError as exc:  # an output path that cannot be written (/proc/..., /dev/null/x, a full disk)
            where = exc.filename or "ecgtool"
            click.secho(f"ecgtool: error: {where}: {exc.strerror or exc}", err=True, fg="red")
            sys.exit(2)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="ecgtool")
@click.option("--no-verify", is_flag=True, help="Use artifacts even when they differ from their run's manifest.json.")
@quiet_option
def main(no_verify: bool) -> None:
    """ecgtool: train, prune, quantise, compile and benchmark ECG rhythm classifiers for edge devices."""
    from ecgtool.core.manifest import set_verify
    from ecgtool.core.ui import reset_quiet

    # for this invocation only: an in-process call's --no-verify or --quiet (a test, a notebook) must not outlive it
    default = not os.environ.get("ECGTOOL_NO_VERIFY")
    set_verify(default and not no_verify)
    ctx = click.get_current_context()
    ctx.call_on_close(lambda: set_verify(default))
    ctx.call_on_close(reset_quiet)
    if no_verify:
        from ecgtool.core.ui import warn

        warn("--no-verify: artifacts are used even where they differ from their manifest.json")


@click.group("data", cls=LazyGroup, commands=DATA_COMMANDS)
def data_group() -> None:
    """Make, import and inspect prepared datasets."""


if __name__ == "__main__":
    main()

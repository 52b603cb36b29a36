"""Pipeline stage: data -> train -> prune -> quantise -> export -> bench -> report from one YAML config."""

from ecgtool.core.api import make_callable

make_callable(__name__, "ecgtool.pipeline.run:run_pipeline")  # ecgtool.pipeline(...) calls run_pipeline

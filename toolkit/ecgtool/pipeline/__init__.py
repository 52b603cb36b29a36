"""Pipeline stage: data -> train -> prune -> quantise -> export -> bench -> report from one YAML config."""

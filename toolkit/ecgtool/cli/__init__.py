"""The command line (`ecgtool`): lazy dispatch to each stage's thin Click command."""

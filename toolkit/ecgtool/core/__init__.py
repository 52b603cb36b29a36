"""Core: errors, terminal output, machine facts, atomic files and hashes, the manifest, file names, artifact lookup."""

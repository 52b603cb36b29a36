"""Deploy stage: predict on records, and the torch-free bundle (package) with its runner."""

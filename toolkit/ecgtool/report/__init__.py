"""Report stage: the size-accuracy report (HTML + markdown) and its plots."""

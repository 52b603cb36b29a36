"""The classical baseline: RR-interval and beat features (wfdb's detector) and a gradient-boosted classifier."""

"""Evaluate stage: metrics (scikit-learn) of any artifact on a dataset split, and explanations of decisions."""

"""Evaluate stage: metrics (scikit-learn) of any artifact on a dataset split, and explanations of decisions."""

from ecgtool.core.api import make_callable

make_callable(__name__, "ecgtool.evaluate.artifact:evaluate_artifact")  # ecgtool.evaluate(...) calls evaluate_artifact

"""Report stage: the size-accuracy report (HTML + markdown) and its plots."""

from ecgtool.core.api import make_callable

make_callable(__name__, "ecgtool.report.build:report")  # ecgtool.report(...) calls report

"""Search stage: family x widths x formats within a latency or size budget."""

from ecgtool.core.api import make_callable

make_callable(__name__, "ecgtool.search.budget:search")  # ecgtool.search(...) calls search

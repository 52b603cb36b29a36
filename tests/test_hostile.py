"""Hostile inputs (hypothesis): the only outcomes allowed are a result or one clear BadInput (exit 2).

Never a traceback, a hang, or an allocation sized by a file's claims. `make test` runs the fast
profile; `make test-slow` the long one (HYPOTHESIS_PROFILE=long), whose counts are in RESULTS.md.
"""

from __future__ import annotations

import json

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is a [dev] dependency (pip install -e .[dev])")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ecgtool.core.errors import BadInput  # noqa: E402
from ecgtool.core.manifest import verify_manifest  # noqa: E402
from ecgtool.models import ModelConfig, build_model  # noqa: E402

pytestmark = pytest.mark.hostile

COUNTS = {"configs": 0, "manifests": 0}

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-10**25, max_value=10**25),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                                 st.dictionaries(st.text(max_size=10), inner, max_size=5)),
                           max_leaves=20)

config_keys = st.sampled_from(["arch", "depth", "width", "kernel_size", "in_channels", "num_classes", "se_reduction",
                               "dropout", "classes", "channels", "extra"])
plausible = {"arch": st.sampled_from(["se_resnet", "resnet", "se_resent"]), "depth": st.sampled_from([18, 34, 19, -1]),
             "width": st.integers(-5, 10**6), "kernel_size": st.integers(-5, 10**8), "extra": st.dictionaries(
                 st.sampled_from(["input_length", "sampling_rate", "length", "note"]), json_scalars, max_size=3)}


@given(st.dictionaries(config_keys, st.one_of(json_values, *plausible.values()), max_size=8))
def test_any_config_dict_builds_a_small_network_or_is_refused(cfg):
    COUNTS["configs"] += 1
    try:
        model_cfg = ModelConfig.from_dict({"depth": 18, **cfg})
    except BadInput as exc:
        assert "\n" not in str(exc)
        return
    # accepted: it is within the bounds, so building it is cheap (no 10^4-wide, 10^7-kernel network)
    assert model_cfg.width <= 1024 and model_cfg.kernel_size <= 255
    if model_cfg.width <= 16 and model_cfg.kernel_size <= 31 and model_cfg.channels is None:
        build_model(model_cfg)


@given(json_values)
def test_any_manifest_is_verified_or_refused_in_one_line(tmp_path_factory, doc):
    COUNTS["manifests"] += 1
    run = tmp_path_factory.mktemp("m")
    (run / "manifest.json").write_text(json.dumps(doc) if not isinstance(doc, float) else "nan")
    try:
        rows = verify_manifest(run)
    except BadInput as exc:
        assert "\n" not in str(exc)
        return
    assert all(r["status"] in ("ok", "missing", "changed", "malformed entry", "outside the run folder",
                               "not a regular file") for r in rows)

import numpy as np
import pytest
from click.testing import CliRunner

from ecgtool.cli.main import main
from ecgtool.data.dataset import load_dataset, write_dataset
from ecgtool.data.merge import merge_datasets
from ecgtool.core.errors import BadInput


def _dataset(path, classes, labels, length=50, fs=200):
    labels = np.asarray(labels)
    x = np.random.default_rng(0).random((len(labels), 1, length), dtype=np.float32)
    idx = np.arange(len(labels))
    splits = {"train": idx[::2], "val": idx[1::4], "test": idx[3::4]}
    records = [{"record_id": f"r{i}"} for i in idx]
    return write_dataset(path, x, labels, classes, records, splits, {"sampling_rate": fs, "source": path.name})


def test_merge_adds_extra_records_to_train_only_matching_classes_by_name(tmp_path):
    base = _dataset(tmp_path / "real", ["Normal", "AF", "SB"], [0, 1, 2, 0] * 5)
    extra = _dataset(tmp_path / "syn", ["Normal", "AF", "AFL", "SB"], [0, 1, 2, 3] * 3)
    out = merge_datasets(base, [extra], tmp_path / "mixed")
    b, e, m = load_dataset(base), load_dataset(extra), load_dataset(out)
    assert m.classes == b.classes
    assert np.array_equal(m.splits["test"], b.splits["test"]) and np.array_equal(m.splits["val"], b.splits["val"])
    assert len(m.splits["train"]) == len(b.splits["train"]) + 9  # 3 AFL records left out
    assert m.meta["merged"]["left_out_by_class"] == {"AFL": 3}
    added = m.splits["train"][len(b.splits["train"]):]
    names = [m.classes[i] for i in m.labels[added]]
    assert names.count("SB") == 3 and "AFL" not in names
    # an extra SB record (label 3 there) keeps its class name (label 2 here) and its samples
    first_sb = int(np.flatnonzero(e.labels == 3)[0])
    j = added[[i for i, n in enumerate(names) if n == "SB"][0]]
    assert np.array_equal(m.signals[j], e.signals[first_sb])


def test_merge_rejects_other_lengths_and_cli_exit_2(tmp_path):
    base = _dataset(tmp_path / "real", ["Normal", "AF"], [0, 1] * 6)
    other = _dataset(tmp_path / "long", ["Normal", "AF"], [0, 1] * 6, length=80)
    with pytest.raises(BadInput):
        merge_datasets(base, [other], tmp_path / "x")
    res = CliRunner().invoke(main, ["data", "merge", str(base), str(other), "--out", str(tmp_path / "y")])
    assert res.exit_code == 2 and "long" in res.output
    assert not (tmp_path / "y").exists()

import numpy as np
from click.testing import CliRunner

from ecgtool.cli.main import main
from ecgtool.data.dataset import load_dataset, write_dataset
from ecgtool.data.thin import thin_dataset


def _holter(path, n_records=3, per_record=9, one_per_record=False):
    """Records of `per_record` consecutive windows; record r is in train (r=0,1) or test (r=2); window k of
    record r carries the value 100*r + k, so a kept window says where it came from."""
    rows, x, y, split_of = [], [], [], []
    for r in range(n_records):
        for k in range(1 if one_per_record else per_record):
            rows.append({"record_id": f"{r}@{k * 10}s", "record": "" if one_per_record else str(r)})
            x.append(np.full((1, 20), 100 * r + k, dtype=np.float32))
            y.append(1 if k >= 6 else 0)  # a short AF episode at the end of each record
            split_of.append("test" if r == n_records - 1 else "train")
    idx = np.arange(len(rows))
    split_of = np.array(split_of)
    splits = {"train": idx[split_of == "train"], "val": np.zeros(0, np.int64), "test": idx[split_of == "test"]}
    return write_dataset(path, np.stack(x), np.array(y), ["Normal", "AF"], rows, splits,
                         {"sampling_rate": 2, "source": "holter"})


def test_thin_keeps_every_nth_window_of_each_record_in_train_and_leaves_test_whole(tmp_path):
    src = _holter(tmp_path / "src")
    out, summary = thin_dataset(src, 4, tmp_path / "thin")
    d = load_dataset(out)
    xs, ys = d.split("train")
    # windows 0, 4, 8 of records 0 and 1; window 8 is AF
    assert sorted(np.asarray(xs)[:, 0, 0].tolist()) == [0, 4, 8, 100, 104, 108]
    assert ys.tolist().count(1) == 2
    xt, _ = d.split("test")
    assert sorted(np.asarray(xt)[:, 0, 0].tolist()) == [200 + k for k in range(9)]
    assert summary["splits"]["train"] == {"kept": 6, "before": 18}
    assert summary["splits"]["test"] == {"kept": 9, "before": 9}
    assert d.meta["thinned"]["every"] == 4 and len(d) == 15  # the dropped windows are not copied
    # every 7th: windows 0 and 7 survive, 7 is AF; every 9th keeps window 0 only, so AF is lost and said so
    assert thin_dataset(src, 9, tmp_path / "thin9")[1]["classes_lost"] == {"train": ["AF"]}


def test_thin_default_is_train_only_and_split_option_adds_val(tmp_path):
    """Default: validation stays whole (early stopping and the INT8 gate see every window); `--split` widens it."""
    src = _holter(tmp_path / "src")
    d0 = load_dataset(src)
    splits = dict(d0.splits)
    splits["val"], splits["train"] = splits["train"][9:], splits["train"][:9]  # record 1 becomes validation
    src = write_dataset(tmp_path / "src2", np.asarray(d0.signals), d0.labels, d0.classes, d0.records, splits,
                        {"sampling_rate": 2, "source": "holter"})
    _, summary = thin_dataset(src, 4, tmp_path / "t")
    assert summary["splits"]["train"] == {"kept": 3, "before": 9}
    assert summary["splits"]["val"] == {"kept": 9, "before": 9}
    res = CliRunner().invoke(main, ["data", "thin", str(src), "--every", "4", "--split", "train", "--split", "val",
                                    "--out", str(tmp_path / "tv")])
    assert res.exit_code == 0 and "train 3 of 9, val 3 of 9, test 9 of 9" in res.output, res.output
    assert load_dataset(tmp_path / "tv").meta["thinned"]["splits"] == ["train", "val"]


def test_thin_leaves_one_window_per_record_datasets_unchanged(tmp_path):
    src = _holter(tmp_path / "src", one_per_record=True)
    out, summary = thin_dataset(src, 4, tmp_path / "thin")
    assert summary["splits"]["train"] == {"kept": 2, "before": 2}
    assert np.array_equal(np.asarray(load_dataset(out).signals), np.asarray(load_dataset(src).signals))


def test_thin_cli_prints_counts_warns_on_lost_class_and_rejects_bad_input(tmp_path):
    src = _holter(tmp_path / "src")
    res = CliRunner().invoke(main, ["data", "thin", str(src), "--every", "9", "--out", str(tmp_path / "t")])
    assert res.exit_code == 0, res.output
    assert "train 2 of 18" in res.output and "no train windows of AF" in res.output
    res = CliRunner().invoke(main, ["data", "thin", str(src), "--every", "0", "--out", str(tmp_path / "u")])
    assert res.exit_code == 2 and "--every must be 1 or more" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "u").exists()
    res = CliRunner().invoke(main, ["data", "thin", str(tmp_path / "nothing"), "--every", "2", "--out",
                                    str(tmp_path / "v")])
    assert res.exit_code == 2 and "nothing" in res.output


def test_quiet_lasts_one_invocation(tmp_path):
    """`-q` in one in-process call must not silence the next call's summary line (xdist ran this file after one)."""
    src = _holter(tmp_path / "src")
    res = CliRunner().invoke(main, ["data", "thin", str(src), "--every", "2", "--out", str(tmp_path / "a"), "-q"])
    assert res.exit_code == 0 and "windows kept" not in res.output
    res = CliRunner().invoke(main, ["data", "thin", str(src), "--every", "2", "--out", str(tmp_path / "b")])
    assert res.exit_code == 0 and "windows kept: train 10 of 18" in res.output

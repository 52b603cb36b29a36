import numpy as np

from ecgtool.data.splits import patient_split, random_split, split_overlap


def test_random_split_stratifies_when_some_classes_are_absent():
    labels = np.array([0] * 50 + [2] * 50)  # class 1 absent, as FAB is in MIT-BIH
    splits = random_split(labels, seed=0)
    test_share = (labels[splits["test"]] == 2).mean()
    assert test_share == 0.5


def test_patient_split_shares_no_patient_and_paper_split_is_64_16_20():
    labels = np.repeat(np.arange(3), 100)
    groups = [f"p{i // 5}" for i in range(300)]  # 5 windows per patient
    splits = patient_split(labels, groups, seed=0)
    assert set(split_overlap(groups, splits).values()) == {0}
    assert sum(len(v) for v in splits.values()) == 300
    sizes = {k: len(v) for k, v in random_split(labels, seed=0).items()}
    assert sizes == {"train": 192, "val": 48, "test": 60}


def test_holdout_split_keeps_held_out_records_and_their_patients_out_of_training():
    from ecgtool.data.splits import holdout_split

    labels = np.array([0, 1] * 60)
    records = [f"r{i // 10}" for i in range(120)]  # 12 records of 10 windows
    groups = [{"r0": "p0", "r1": "p0"}.get(r, r) for r in records]  # r1 is the same patient as r0
    splits = holdout_split(labels, groups, records, ["r0", "r5"], seed=0)
    test_records = {records[i] for i in splits["test"]}
    assert test_records == {"r0", "r1", "r5"}  # r1 follows its patient into test
    trained = {records[i] for i in np.concatenate([splits["train"], splits["val"]])}
    assert not trained & test_records and len(trained) == 9
    assert sorted(np.concatenate(list(splits.values())).tolist()) == list(range(120))
    assert len(splits["val"]) and set(split_overlap(groups, splits).values()) == {0}


def test_holdout_split_moves_a_class_only_validation_would_see_into_train():
    from ecgtool.data.splits import holdout_split

    labels = np.array([0] * 100 + [2] * 10)  # class 2 lives in one record (r10) only
    records = [f"r{i // 10}" for i in range(110)]
    for seed in range(4):
        s = holdout_split(labels, records, records, ["r0"], seed=seed)
        assert 2 in set(labels[s["train"]].tolist())
        assert set(labels[s["val"]].tolist()) <= set(labels[s["train"]].tolist())

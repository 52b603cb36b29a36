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

"""Data stage: the prepared-dataset format, the synthetic generator, importers and splits."""

from ecgtool.data.classes import DEFAULT_CLASSES, PAPER_SHARES
from ecgtool.data.dataset import PreparedDataset, load_dataset, write_dataset

__all__ = ["DEFAULT_CLASSES", "PAPER_SHARES", "PreparedDataset", "load_dataset", "write_dataset"]

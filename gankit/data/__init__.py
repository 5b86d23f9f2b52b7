"""Data: prepare sources once into uint8 arrays, stream shuffled batches, augment on the device."""
from .dataset import BUILTIN, BatchStream, PreparedDataset, to_float
from .prepare import prepare

__all__ = ["BUILTIN", "BatchStream", "PreparedDataset", "prepare", "to_float"]

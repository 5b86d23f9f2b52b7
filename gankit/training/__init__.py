"""The shared trainer, checkpoints, monitoring and speed accounting."""
from .trainer import Trainer

__all__ = ["Trainer"]

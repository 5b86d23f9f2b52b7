"""gankit: train, evaluate and explore image generators in plain PyTorch."""
__version__ = "0.1.0"

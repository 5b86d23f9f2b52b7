"""gankit: train, evaluate and explore image generators in plain PyTorch.

The Python API (gankit/api.py): `gankit.load`, `gankit.train`, `gankit.evaluate`, `gankit.fid`, `gankit.export`.
"""
__version__ = "0.1.0"

_API = {"load", "train", "evaluate", "fid", "info", "Model"}


def __getattr__(name: str):  # imported on first use, so `import gankit` stays light and cycle-free
    if name in _API:
        from . import api
        return getattr(api, name)
    if name == "export":
        from .exported import export
        return export
    raise AttributeError(f"module 'gankit' has no attribute {name!r}")

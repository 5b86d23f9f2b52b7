import os
from pathlib import Path

import pytest

from gankit.config import apply_overrides, load_preset
from gankit.data import prepare

SHARED = Path(os.environ.get("GANKIT_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(autouse=True, scope="session")
def _cache(tmp_path_factory):
    os.environ["GANKIT_CACHE"] = str(tmp_path_factory.mktemp("cache"))


def tiny(preset: str, *extra: str):
    """A preset shrunk to test size: same algorithm, width 8, batch 8, fp32, frequent outputs."""
    return apply_overrides(load_preset(preset), ["model.width=8", "train.batch=8", "train.precision=fp32",
                                                 "train.log_every=2", "train.sample_every=4",
                                                 "train.ckpt_every=2", "train.grid=16", *extra])


@pytest.fixture(scope="session")
def toy32(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "toy32"
    prepare("toyfaces", [], 32, out, count=200, progress=False, workers=1)
    return out


@pytest.fixture(scope="session")
def featnet(toy32):
    """gankit's attribute network trained on the toy faces (written to toy32/features)."""
    from gankit.metrics.featnet import train_feature_net
    return train_feature_net(toy32, epochs=8, batch=32, lr=3e-3, progress=False)


def shared(sub: str) -> Path:
    path = SHARED / sub
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set GANKIT_SHARED_DATA to the shared/data folder)")
    return path

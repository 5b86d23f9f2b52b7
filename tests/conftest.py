"""Shared fixtures, and the one place that pins the tests' numeric environment.

Threads: GANKIT_TEST_THREADS (default 2), for torch here and OMP in child processes. Precision:
GANKIT_PRECISION (auto | fp32 | bf16), which every tiny training config and tool follows; with
ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA a bf16 machine takes the fp32 path of an AVX2-only one.
`make test` sets these; `make test-other` runs this machine's other numeric path.
"""
import os
from pathlib import Path

import pytest
import torch

from gankit.config import apply_overrides, load_preset
from gankit.data import prepare
from gankit.env import cpu_supports_bf16, precision_name, precision_setting, resolve_precision
from gankit.env import cpu_name

SHARED = Path(os.environ.get("GANKIT_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
THREADS = int(os.environ.get("GANKIT_TEST_THREADS", "2"))


def pytest_configure(config):
    torch.set_num_threads(THREADS)
    os.environ["OMP_NUM_THREADS"] = str(THREADS)
    precision_setting()  # a bad GANKIT_PRECISION stops here, with its one-line message


def pytest_report_header(config):
    return (f"gankit numeric environment: {cpu_name()}, torch {torch.__version__} "
            f"({torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} threads, "
            f"GANKIT_PRECISION={precision_setting()} -> training in "
            f"{precision_name(resolve_precision('cpu'))}, native bf16 {cpu_supports_bf16()}")


@pytest.fixture(autouse=True, scope="session")
def _cache(tmp_path_factory):
    os.environ["GANKIT_CACHE"] = str(tmp_path_factory.mktemp("cache"))


def tiny(preset: str, *extra: str):
    """A preset shrunk to test size: same algorithm, width 8, batch 8, frequent outputs, no EMA unless
    a test asks (the DCGAN and WGAN-GP twins have it on); its precision follows GANKIT_PRECISION (auto: bf16 where
    native), so each numeric path runs the same tests."""
    return apply_overrides(load_preset(preset), ["model.width=8", "train.batch=8", "train.precision=auto",
                                                 "train.ema=0",
                                                 "train.log_every=2", "train.sample_every=4",
                                                 "train.ckpt_every=2", "train.grid=16", *extra])


@pytest.fixture(scope="session")
def toy32(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "toy32"
    prepare("toyfaces", [], 32, out, count=200, progress=False, workers=1)
    return out


@pytest.fixture(scope="session")
def featnet(toy32):
    """gankit's attribute network trained on the toy faces (written to toy32/features). Learned: only
    for tests whose purpose is that learning; plumbing tests use tests/planted.py."""
    from gankit.metrics.featnet import train_feature_net
    # fp32 on every path: a fixture, not the numeric path under test (tests/test_env.py checks that
    # training it follows GANKIT_PRECISION), and emulated bf16 on an AVX2-only CPU is ~10x slower
    return train_feature_net(toy32, epochs=8, batch=32, lr=3e-3, progress=False, precision="fp32")


def shared(sub: str) -> Path:
    path = SHARED / sub
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set GANKIT_SHARED_DATA to the shared/data folder)")
    return path


@pytest.fixture
def planted(monkeypatch):
    """The studio and the explorer see the planted generator and labeller (tests/planted.py)."""
    from tests.planted import plant
    plant(monkeypatch)

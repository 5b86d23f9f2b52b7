"""FID and KID: the pytorch-fid equivalence kit, and the formulas on known answers."""
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import linalg

from gankit.errors import GankitError
from gankit.metrics.frechet import Stats, frechet_distance, kernel_distance, statistics
from gankit.metrics.inception import FIDInceptionV3, find_fid_weights
from tests.conftest import SHARED

KIT = Path(os.environ.get("GANKIT_FID_KIT", SHARED.parent / "fid-check"))


@pytest.mark.skipif(not (KIT / "keys.json").exists(), reason=f"FID check kit not found at {KIT} (set GANKIT_FID_KIT)")
def test_kit_matches_pytorch_fid():
    from gankit.metrics.fidcheck import check_kit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 24 samples < 2048 dims: the expected singular-covariance warning
        r = check_kit(KIT)
    assert r["pool3_rel_err"] < 1e-4, r
    assert r["fid_rel_err"] < 1e-6, r


def test_network_has_the_official_keys():
    import json
    net = FIDInceptionV3()
    sd = net.state_dict()
    assert len(sd) == 566 and sd["fc.weight"].shape == (1008, 2048)
    if (KIT / "keys.json").exists():
        keys = json.loads((KIT / "keys.json").read_text())["keys"]
        assert {k: list(v.shape) for k, v in sd.items()} == keys


def test_missing_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("GANKIT_FID_WEIGHTS", raising=False)
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path))
    with pytest.raises(GankitError, match="pt_inception-2015-12-05-6726825d.pth") as e:
        find_fid_weights()
    assert "\n" not in str(e.value) and "--fid-weights" in str(e.value)


def test_frechet_formula_on_gaussians_with_known_answer():
    rng = np.random.default_rng(0)
    d = 6
    a = rng.normal(size=(d, d))
    s1 = a @ a.T + d * np.eye(d)
    s2 = np.diag(rng.uniform(1, 3, d))
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    # for commuting... in general: Tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)
    r1 = linalg.sqrtm(s1).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * linalg.sqrtm(r1 @ s2 @ r1).real)
    got = frechet_distance(Stats(mu1, s1, 100), Stats(mu2, s2, 100))
    assert got == pytest.approx(expected, rel=1e-9)
    # 1-d closed form: (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance(Stats(np.array([1.0]), np.array([[4.0]]), 2),
                            Stats(np.array([3.0]), np.array([[9.0]]), 2)) == pytest.approx(4 + 1)


def test_fid_of_a_set_with_itself_is_zero_and_symmetric():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 16))
    y = rng.normal(size=(500, 16)) * 1.3 + 0.2
    sx, sy = statistics(x), statistics(y)
    assert abs(frechet_distance(sx, sx)) < 1e-8
    assert frechet_distance(sx, sy) == pytest.approx(frechet_distance(sy, sx), rel=1e-8)
    assert frechet_distance(sx, sy) > 0.5


def test_statistics_warn_when_fewer_samples_than_dimensions():
    x = np.random.default_rng(2).normal(size=(10, 32))
    with pytest.warns(UserWarning, match="singular"):
        s = statistics(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isfinite(frechet_distance(s, statistics(x[::-1] * 1.1)))


def test_kid_near_zero_for_one_distribution_and_rises_with_shift():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    same, _ = kernel_distance(a, b, subsets=20, subset_size=200)
    shifted, _ = kernel_distance(a, b + 0.5, subsets=20, subset_size=200)
    far, _ = kernel_distance(a, b + 1.0, subsets=20, subset_size=200)
    assert abs(same) < 0.05 * shifted and shifted > 0.1 and far > shifted


@pytest.mark.skipif(not (KIT / "keys.json").exists(), reason=f"FID check kit not found at {KIT} (set GANKIT_FID_KIT)")
def test_fid_cli_with_a_weights_file_reproduces_pytorch_fid(tmp_path, capsys, monkeypatch):
    """`gankit fid a b --fid-weights FILE`: a .pth read from disk, two .npz sets, pytorch-fid's number."""
    import json
    monkeypatch.setenv("GANKIT_PRECISION", "fp32")  # the equivalence is an fp32 claim (bf16 is honoured if asked)

    import torch

    from gankit.cli import main
    from gankit.metrics.fidcheck import recipe_state_dict
    spec = json.loads((KIT / "keys.json").read_text())
    torch.save(recipe_state_dict(spec["keys"], spec["seed"]), tmp_path / "w.pth")
    images = np.load(KIT / "images.npz")["images"]
    np.savez(tmp_path / "a.npz", images=images[:24])
    np.savez(tmp_path / "b.npz", images=images[24:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fid", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--fid-weights",
                     str(tmp_path / "w.pth"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    expected = float(np.load(KIT / "expected.npz")["fid_first24_vs_last24"])
    assert result["value"] == pytest.approx(expected, rel=1e-6)
    assert result["n_a"] == result["n_b"] == 24 and result["bf16"] is False

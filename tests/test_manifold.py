"""Precision/recall, density/coverage, the Inception Score and clean-fid's resize, on constructed sets
whose answers are known exactly, and several metrics from one pass of generation and features."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from gankit.cli import main
from gankit.data.toyfaces import draw_face
from gankit.errors import GankitError
from gankit.metrics import registry
from gankit.metrics.manifold import density_coverage, inception_score, kth_neighbour_radii, precision_recall
from gankit.metrics.registry import parse_metric
from gankit.metrics.resize import clean_resize


def lattice(n: int, d: int = 8, offset: float = 0.0) -> np.ndarray:
    """n points at 0, 1, ..., n-1 along the first axis of R^d: the k-th neighbour distances are known
    (k=3: 2 inside, 3 at the two ends; k=5: 3 inside, 4 next to the ends, 5 at the ends)."""
    x = np.zeros((n, d))
    x[:, 0] = np.arange(n) + offset
    return x


def test_names():
    assert (parse_metric("pr10k").kind, parse_metric("pr10k").net) == ("pr", "inception")
    assert (parse_metric("dc-celeba-attr5k").kind, parse_metric("dc-celeba-attr5k").net) == ("dc", "celeba-attr")
    assert parse_metric("is50k").kind == "is"
    clean = parse_metric("fid10k-clean")
    assert (clean.kind, clean.resize, clean.n) == ("frechet", "clean", 10000)
    assert parse_metric("kid10k").resize == "legacy"
    for bad in ("is-celeba-attr10k", "fd-celeba-attr10k-clean", "pr10k-dirty", "dc", "kd10k"):
        with pytest.raises(GankitError):
            parse_metric(bad)


def test_radii_on_a_lattice():
    r = kth_neighbour_radii(torch.from_numpy(lattice(10)), 3).numpy()
    assert r.tolist() == [3, 2, 2, 2, 2, 2, 2, 2, 2, 3]


def test_identical_sets():
    x = np.random.default_rng(0).normal(size=(300, 16))
    pr, dc = precision_recall(x, x), density_coverage(x, x)
    assert pr["precision"] == pr["recall"] == dc["coverage"] == 1.0
    assert dc["density"] >= 1 / 5  # each point is at least in its own ball


def test_disjoint_sets():
    x = lattice(100)
    far = lattice(100, offset=1000.0)
    pr, dc = precision_recall(x, far), density_coverage(x, far)
    assert pr["precision"] == pr["recall"] == dc["density"] == dc["coverage"] == 0.0


def test_a_subset_that_covers_half():
    x = lattice(100)
    real = np.concatenate([x, x + [[1000.0] + [0] * 7]])  # two far clusters
    fake = x  # the first cluster, point for point
    pr, dc = precision_recall(real, fake), density_coverage(real, fake)
    assert pr["precision"] == 1.0 and pr["recall"] == 0.5
    assert dc["coverage"] == 0.5


def test_a_collapsed_set():
    real = lattice(100)
    fake = np.repeat(real[50:51], 40, axis=0)  # every sample is real point 50
    pr, dc = precision_recall(real, fake), density_coverage(real, fake)
    assert pr["precision"] == 1.0
    assert pr["recall"] == 1 / 100  # the generated manifold has radius 0: it holds point 50 only
    # k=5: the balls of points 47..53 (radius 3) hold point 50
    assert dc["coverage"] == 7 / 100 and dc["density"] == pytest.approx(7 / 5)


def test_neighbours_in_blocks_equal_one_block():
    from gankit.metrics.manifold import balls_holding
    rng = np.random.default_rng(1)
    real, fake = torch.from_numpy(rng.normal(size=(500, 10))), torch.from_numpy(rng.normal(size=(400, 10)) * 1.3)
    radii = kth_neighbour_radii(real, 3, block=10_000)
    assert torch.allclose(kth_neighbour_radii(real, 3, block=37), radii, rtol=1e-12, atol=0)  # GEMM blocking: ulps
    whole, blocks = balls_holding(fake, real, radii, block=10_000), balls_holding(fake, real, radii, block=37)
    assert torch.equal(whole[0], blocks[0]) and torch.equal(whole[1], blocks[1])
    pr = precision_recall(real.numpy(), fake.numpy())
    assert 0 < pr["precision"] < 1 and 0 < pr["recall"] < 1


def test_inception_score_of_constructed_predictions():
    uniform = np.zeros((1000, 1008))
    assert inception_score(uniform)["value"] == pytest.approx(1.0)
    classes = 20
    confident = np.full((1000, 1008), -50.0)
    confident[np.arange(1000), np.arange(1000) % classes] = 50.0  # every split sees each class equally
    r = inception_score(confident)
    assert r["value"] == pytest.approx(classes, rel=1e-6) and r["std"] == pytest.approx(0, abs=1e-6)
    one_class = np.full((1000, 1008), -50.0)
    one_class[:, 3] = 50.0
    assert inception_score(one_class)["value"] == pytest.approx(1.0)


def test_inception_score_uses_the_logits_without_bias():
    from gankit.metrics.inception import FIDInceptionV3
    net = FIDInceptionV3()
    torch.nn.init.normal_(net.fc.bias, std=5.0)
    feats = registry.inception_features(net, "random")
    f = np.random.default_rng(0).random((200, 2048))
    got = registry.score(parse_metric("is1k"), f, np.zeros((0, 0)), feats)
    want = inception_score(f @ net.fc.weight.detach().double().numpy().T)
    assert got["value"] == pytest.approx(want["value"], rel=1e-9)
    assert got["value"] != pytest.approx(inception_score(net.fc(torch.from_numpy(f).float()).detach().numpy())["value"],
                                         rel=1e-3)


def smooth_images(n: int, size: int) -> np.ndarray:
    """Smooth colour fields inside [40, 215]: bicubic overshoot never reaches uint8's limits, so PIL's own
    uint8 RGB resize differs from the float one by its rounding only."""
    rng = np.random.default_rng(0)
    coarse = rng.uniform(40, 215, size=(n, 6, 6, 3)).astype(np.float32)
    t = torch.nn.functional.interpolate(torch.from_numpy(coarse).permute(0, 3, 1, 2), size=(size, size),
                                        mode="bicubic", align_corners=True).clamp(60, 195)
    return t.permute(0, 2, 3, 1).round().numpy().astype(np.uint8)


def test_clean_resize_is_pils_antialiased_bicubic_and_differs_from_legacy():
    for images in (smooth_images(3, 64), smooth_images(3, 512)):  # enlarging, and shrinking (antialiased)
        clean = clean_resize(images)
        assert clean.shape == (len(images), 299, 299, 3) and clean.dtype == np.float32
        pil = np.stack([np.asarray(Image.fromarray(a).resize((299, 299), Image.BICUBIC)) for a in images])
        diff = np.abs(clean - pil.astype(np.float32))
        assert diff.max() <= 1.5 and diff.mean() < 0.3  # PIL's uint8 path rounds the same filter's output
    stripes = np.zeros((1, 512, 512, 3), np.uint8)
    stripes[:, :, ::2] = 255  # one-pixel stripes: antialiasing averages them to grey, bilinear aliases them
    clean = clean_resize(stripes)
    legacy = torch.nn.functional.interpolate(torch.from_numpy(stripes).permute(0, 3, 1, 2).float(), size=(299, 299),
                                             mode="bilinear", align_corners=False)
    assert clean[:, 10:-10, 10:-10].std() < 10 < legacy[..., 10:-10, 10:-10].std()
    # the network's own interpolate is the identity at 299 px, so clean images reach it unchanged
    x = torch.rand(1, 3, 299, 299)
    assert torch.equal(torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False), x)


def test_clean_features_are_fed_resized_and_keyed_apart():
    seen = []

    class Probe(torch.nn.Module):
        fc = torch.nn.Linear(3, 1008)

        def forward(self, x):
            seen.append((tuple(x.shape[-2:]), float(x.max())))
            return x.mean((2, 3))

    u8 = np.stack([draw_face(i, 32)[0] for i in range(3)])
    legacy, clean = registry.inception_features(Probe(), "p"), registry.inception_features(Probe(), "p", "clean")
    registry.features_of([u8], legacy, bf16=False)
    registry.features_of([u8], clean, bf16=False)
    assert seen[0][0] == (32, 32) and seen[1][0] == (299, 299) and seen[1][1] <= 1.0
    assert legacy.id != clean.id  # cached reference statistics cannot mix


def test_several_metrics_from_one_pass(featnet, toy32, tmp_path, capsys, monkeypatch):
    from gankit.training import Trainer
    from tests.conftest import tiny
    t = Trainer.new(tiny("dcgan-32-cpu", "train.steps=2"), str(toy32), tmp_path, progress=False)
    t.run()
    names = ["fd-toyfaces-attr1k", "pr-toyfaces-attr1k", "dc-toyfaces-attr1k", "kd-toyfaces-attr1k"]
    alone = {}
    for name in names:
        assert main(["eval", str(t.run_dir), "--metric", name, "--ref", str(toy32), "--json"]) == 0
        alone[name] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    calls, generated = [], []
    extract = registry.extract_features
    monkeypatch.setattr(registry, "extract_features", lambda *a, **k: calls.append(1) or extract(*a, **k))
    batches = registry.generator_batches
    monkeypatch.setattr(registry, "generator_batches",
                        lambda gen, n, **k: batches(lambda m: generated.append(m) or gen(m), n, **k))
    argv = ["eval", str(t.run_dir), "--ref", str(toy32), "--json"] + [x for n in names for x in ("--metric", n)]
    assert main(argv) == 0
    together = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert len(calls) == 1  # the generated images' features, once (the reference's are cached)
    assert sum(generated) == 1000
    for name, r in zip(names, together):
        assert r["metric"] == name
        for key in ("value", "std", "precision", "recall", "density", "coverage"):
            assert r.get(key) == alone[name].get(key), (name, key)
    assert 0 <= together[1]["precision"] <= 1 and 0 <= together[2]["coverage"] <= 1


def test_in_training_metric_must_be_one_number(toy32):
    from tests.conftest import tiny
    with pytest.raises(GankitError, match="train.metric"):
        tiny("dcgan-32-cpu", "train.metric=pr-toyfaces-attr1k", f"train.metric_ref={toy32}")


def test_fid_resize_clean_with_a_feature_network_is_refused(toy32, capsys):
    assert main(["fid", str(toy32), str(toy32), "--features", str(toy32 / "features"), "--resize", "clean"]) == 2
    assert "--resize clean" in capsys.readouterr().err

"""Named metrics, image sets, gankit's feature network, eval and the in-training metric."""
import json

import numpy as np
import pytest
import torch

from gankit.cli import main
from gankit.errors import GankitError
from gankit.metrics.registry import image_set, parse_metric
from gankit.training import Trainer
from tests.conftest import tiny


def test_metric_names_carry_their_protocol():
    assert parse_metric("fid10k").__dict__ == {"name": "fid10k", "kind": "frechet", "net": "inception", "n": 10000,
                                               "resize": "legacy"}
    assert parse_metric("kid50k").kind == "kernel"
    s = parse_metric("fd-celeba-attr10k")
    assert (s.net, s.n, s.kind) == ("celeba-attr", 10000, "frechet")
    assert parse_metric("kd-cifar10-class2k").net == "cifar10-class"
    for bad in ("fid", "fd10k", "fid-x10k", "fidelity", "kd-10"):
        with pytest.raises(GankitError):
            parse_metric(bad)


def test_image_sets_prepared_slices_npz_and_folders(toy32, tmp_path):
    n, batches = image_set(f"{toy32}[10:30]", batch=8)
    arr = np.concatenate(list(batches))
    assert n == 20 and arr.shape == (20, 32, 32, 3)
    assert np.array_equal(arr, np.load(toy32 / "images.npy")[10:30])
    np.savez(tmp_path / "x.npz", labels=np.arange(3), images=arr[:3])
    assert image_set(tmp_path / "x.npz")[0] == 3
    from PIL import Image
    (tmp_path / "f").mkdir()
    for i in range(3):
        Image.fromarray(arr[i]).save(tmp_path / "f" / f"{i}.png")
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "f" / "z.png")  # another size: own batch
    n, batches = image_set(tmp_path / "f")
    shapes = [b.shape for b in batches]
    assert n == 4 and shapes == [(3, 32, 32, 3), (1, 40, 40, 3)]


def test_feature_network_learns_and_separates_sets(featnet, toy32, tmp_path):
    assert featnet["name"] == "toyfaces-attr" and featnet["kind"] == "attributes"
    assert featnet["heldout_images"] == 20 and featnet["train_images"] == 180
    assert (toy32 / "features" / "featnet.safetensors").exists()
    # The report's held-out accuracy is over 20 images (0.79 to 0.81 against a 0.72 baseline): too few to
    # judge by. Toy faces are unlimited, so judge the network on 600 it never saw (seeds past the 200).
    # Measured on 1000: mean accuracy 0.824 to 0.828 against the majority baseline 0.705, each hair colour
    # 0.991 to 1.0 (its baseline ~0.75), in fp32 at 1 and 2 threads and in bf16. Untrained: about 0.5.
    from gankit.data.toyfaces import ATTRIBUTES, draw_face
    from gankit.metrics.featnet import evaluate, load_feature_net
    net, report = load_feature_net(toy32 / "features")
    assert report["outputs"] == list(ATTRIBUTES)
    faces = [draw_face(seed, 32) for seed in range(10_000, 10_600)]
    images, attrs = np.stack([f[0] for f in faces]), np.stack([f[1] for f in faces])
    acc, per_output, baseline = evaluate(net, torch.from_numpy(images), (attrs > 0).astype(np.float32), "attributes")
    assert acc > baseline + 0.06, (acc, baseline, per_output)
    hair = [per_output[ATTRIBUTES.index(a)] for a in ATTRIBUTES if a.endswith("_Hair")]
    assert len(hair) == 4 and min(hair) > 0.95, per_output
    # same distribution (two halves) is closer than data vs noise
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "noise.npz", images=rng.integers(0, 255, (100, 32, 32, 3), dtype=np.uint8))
    for b in (f"{toy32}[100:]", str(tmp_path / "noise.npz")):
        assert main(["fid", f"{toy32}[:100]", b, "--features", str(toy32 / "features"), "--json"]) == 0
    # (values printed; computed again through the API for the assertion)
    from gankit.metrics.registry import compare_sets, load_features
    feats = load_features("toyfaces-attr", features=str(toy32 / "features"))
    halves = compare_sets(f"{toy32}[:100]", f"{toy32}[100:]", feats)["value"]
    noise = compare_sets(f"{toy32}[:100]", str(tmp_path / "noise.npz"), feats)["value"]
    assert halves < noise / 5


def test_eval_and_in_training_metric_with_best_checkpoint(featnet, toy32, tmp_path, capsys):
    cfg = tiny("dcgan-32-cpu", "train.steps=4", "train.metric=fd-toyfaces-attr1k", "train.metric_every=2",
               f"train.metric_ref={toy32}")
    t = Trainer.new(cfg, str(toy32), tmp_path, progress=False)
    t.run()
    recs = [json.loads(line) for line in (t.run_dir / "metrics.jsonl").read_text().splitlines()]
    values = [r["fd-toyfaces-attr1k"] for r in recs if "fd-toyfaces-attr1k" in r]
    assert len(values) == 2 and all(np.isfinite(values))
    best = json.loads(next((t.run_dir / "checkpoints" / "best").glob("ckpt-*.json")).read_text())
    assert best["value"] == min(values)
    assert (t.run_dir / "plots" / "metric.png").exists()
    assert list((toy32 / "stats").glob("*-n1000*.npz"))  # reference statistics cached once (-bf16 in bf16)

    assert main(["eval", str(t.run_dir), "--metric", "fd-toyfaces-attr1k", "--ref", str(toy32), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["step"] == 4 and result["n_generated"] == 1000 and result["value"] > 0
    last = json.loads((t.run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["metric"] == "fd-toyfaces-attr1k"


def test_in_training_metric_scores_the_average_and_the_generator_itself(featnet, toy32, tmp_path):
    from gankit.metrics.registry import evaluate_generator
    base = ["train.steps=4", "train.metric=fd-toyfaces-attr1k", "train.metric_every=4", f"train.metric_ref={toy32}",
            "train.ema=0.9", "train.ema_rampup=0"]
    t = Trainer.new(tiny("dcgan-32-cpu", *base), str(toy32), tmp_path, progress=False)
    t.run()
    rec = [json.loads(line) for line in (t.run_dir / "metrics.jsonl").read_text().splitlines()
           if "fd-toyfaces-attr1k" in line][-1]
    t.family.use_ema = False
    gen = torch.Generator().manual_seed(t.cfg.train.seed + 2)
    raw = evaluate_generator("fd-toyfaces-attr1k", lambda n: t.family.generate(t.family.sample_z(n, gen)), str(toy32),
                             feats=t._features)["value"]
    assert rec["fd-toyfaces-attr1k_raw"] == pytest.approx(raw, rel=1e-6)
    assert rec["fd-toyfaces-attr1k"] != rec["fd-toyfaces-attr1k_raw"]
    off = Trainer.new(tiny("dcgan-32-cpu", *base, "train.metric_raw=0"), str(toy32), tmp_path, progress=False)
    off.run()
    assert "_raw" not in (off.run_dir / "metrics.jsonl").read_text()


def test_fid_without_weights_is_one_line_error(toy32, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GANKIT_FID_WEIGHTS", raising=False)
    assert main(["fid", str(toy32), str(toy32)]) == 2
    err = capsys.readouterr().err.strip()
    assert "pt_inception-2015-12-05-6726825d.pth" in err and "\n" not in err


def test_one_loaded_feature_network_serves_one_space_only(toy32):
    """evaluate_many(feats=...) with metrics in two spaces (gankit's net and Inception) is refused:
    the loaded network would have scored both."""
    from gankit.metrics.registry import evaluate_many
    gen = lambda n: torch.zeros(n, 3, 32, 32)
    with pytest.raises(GankitError, match="several feature spaces"):
        evaluate_many(["fd-toyfaces-attr1k", "fid1k"], gen, str(toy32), feats=object())

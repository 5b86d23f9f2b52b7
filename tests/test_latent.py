"""Latent tools: interpolation, projection, PCA, attribute directions and the explore commands."""
import json
from pathlib import Path

import numpy as np
import torch

from gankit.cli import main
from gankit.families import build_family
from gankit.latent import difference_of_means, linear_direction, paths, pca, project, slerp
from tests.conftest import tiny


def test_slerp_endpoints_norms_and_midpoint():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 16, generator=g), torch.randn(5, 16, generator=g)
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-5) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-5)
    # the norm moves linearly from |a| to |b| along the arc (lerp's would sag in the middle)
    for t in (0.25, 0.5, 0.8):
        expected = (1 - t) * a.norm(dim=1) + t * b.norm(dim=1)
        assert torch.allclose(slerp(a, b, t).norm(dim=1), expected, atol=1e-4)
    assert (torch.lerp(a, b, 0.5).norm(dim=1) < 0.5 * (a.norm(dim=1) + b.norm(dim=1))).all()
    # orthogonal unit vectors: the midpoint is at 45 degrees
    e1, e2 = torch.eye(2)[:1], torch.eye(2)[1:]
    assert torch.allclose(slerp(e1, e2, 0.5), torch.tensor([[1.0, 1.0]]) / 2 ** 0.5, atol=1e-6)
    # parallel codes fall back to lerp instead of dividing by sin(0)
    assert torch.allclose(slerp(a[:1], 2 * a[:1], 0.5), 1.5 * a[:1], atol=1e-5)
    z = paths(a, b, 7, "slerp")
    assert z.shape == (5, 7, 16) and torch.allclose(z[:, 0], a, atol=1e-5) and torch.allclose(z[:, -1], b, atol=1e-5)


def test_projection_recovers_a_code_of_the_generator_itself():
    torch.manual_seed(0)
    family = build_family(tiny("dcgan-32-cpu", "model.z_dim=16"), torch.device("cpu"), None)
    z_true = family.sample_z(4, torch.Generator().manual_seed(1))
    x = family.generate(z_true)
    result = project(family, x, steps=300, restarts=4, lr=0.05, gen=torch.Generator().manual_seed(2))
    assert result.history[-1] < 0.2 * result.history[0]
    assert result.error.max() < 0.05
    cos = torch.nn.functional.cosine_similarity(result.z, z_true, dim=1)
    assert cos.min() > 0.9, cos
    # generator weights untouched and trainable again afterwards
    assert all(p.requires_grad for p in family.nets["G"].parameters())


def test_projection_keeps_uniform_codes_in_the_prior_support():
    family = build_family(tiny("began-64-cpu", "model.res=32"), torch.device("cpu"), None)
    x = torch.rand(3, 3, 32, 32) * 2 - 1  # images the generator cannot make: pushes codes outwards
    result = project(family, x, steps=20, restarts=2, lr=0.5)
    assert result.z.abs().max() <= 1.0 and result.z.shape == (3, 64)


def test_pca_directions_are_orthonormal_and_ordered():
    g = torch.Generator().manual_seed(0)
    scales = torch.tensor([5.0, 3.0, 2.0] + [0.5] * 9)
    q, _ = torch.linalg.qr(torch.randn(12, 12, generator=g))
    codes = (torch.randn(4000, 12, generator=g) * scales) @ q.T + 3.0
    fit = pca(codes, k=4)
    assert torch.allclose(fit.components @ fit.components.T, torch.eye(4), atol=1e-5)
    assert torch.allclose(fit.mean, torch.full((12,), 3.0), atol=0.3)
    assert (fit.variance[:-1] >= fit.variance[1:]).all()
    assert abs(float(fit.components[0] @ q[:, 0])) > 0.99  # the planted widest axis comes first
    assert abs(float(fit.variance[0]) - 25.0) < 2.5


def test_a_planted_attribute_direction_is_recovered():
    g = torch.Generator().manual_seed(0)
    u = torch.nn.functional.normalize(torch.randn(32, generator=g), dim=0)
    codes = torch.randn(3000, 32, generator=g)
    score = codes @ u + 0.3 * torch.randn(3000, generator=g)
    hard, soft = score > 0.8, torch.sigmoid(4 * (score - 0.8))  # a rarer attribute, and soft labels
    for labels in (hard, soft):
        for found in (difference_of_means(codes, labels), linear_direction(codes, labels)):
            assert float(torch.nn.functional.cosine_similarity(found, u, dim=0)) > 0.95
    # a random labelling has no such direction
    noise = torch.rand(3000, generator=g) > 0.5
    assert abs(float(torch.nn.functional.cosine_similarity(difference_of_means(codes, noise), u, dim=0))) < 0.3


def made_by_planted_g(folder: Path, n: int, z_dim: int) -> tuple[torch.Tensor, Path]:
    """n PNGs the planted generator made from known codes (returned, in file-name order)."""
    from PIL import Image

    from gankit.images import to_uint8
    from tests.planted import PlantedG
    z = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(5))
    folder.mkdir()
    for i, im in enumerate(to_uint8(PlantedG(z_dim, 32)(z))):
        Image.fromarray(im).save(folder / f"{i}.png")
    return z, folder


def test_explore_commands_write_montages_and_records(toy32, planted, tmp_path, capsys):
    """Plumbing of every explore command, on real run folders whose generator and attribute
    labeller are planted (tests/planted.py): the right answers are known by construction."""
    from PIL import Image

    from tests.planted import direction_of
    runs = {}
    for preset in ("dcgan-32-cpu", "vae-64-cpu", "began-64-cpu"):
        argv = ["train", "--preset", preset, "--data", str(toy32), "--runs", str(tmp_path / preset), "--quiet",
                "--set", "model.res=32", "--set", "model.width=8", "--set", "train.batch=8",
                "--set", "train.steps=2"]
        assert main(argv) == 0, preset
        runs[preset] = next((tmp_path / preset).iterdir())
    capsys.readouterr()
    run = runs["dcgan-32-cpu"]
    explore = run / "explore"

    assert main(["explore", str(run), "interpolate", "--pairs", "3", "--steps", "5", "--method", "lerp"]) == 0
    img = np.asarray(Image.open(explore / "interpolate-lerp.png"))
    assert img.shape[0] > 3 * 34 and img.shape[1] >= 5 * 34  # 3 rows of 5 labelled images
    assert json.loads((explore / "interpolate-lerp.json").read_text())["pairs"] == 3

    # images the planted generator made from known codes project back to those codes
    z_true, made = made_by_planted_g(tmp_path / "made", 3, 100)
    assert main(["project", str(run), "--images", str(made), "--steps", "150", "--restarts", "2"]) == 0
    rec = json.loads((explore / "project.json").read_text())
    assert rec["n"] == 3 and rec["init"] == "prior" and len(rec["per_image"]) == 3
    assert rec["mean_l1"] < 0.05 < 0.5 * rec["error_curve"][0], rec["error_curve"]
    assert abs(rec["mean_l1"] - np.mean([r["l1"] for r in rec["per_image"]])) < 1e-4
    found = torch.load(explore / "project-codes.pt")
    order = [int(Path(nm).stem) for nm in found["names"]]
    cos = torch.nn.functional.cosine_similarity(found["z"], z_true[order], dim=1)
    assert cos.min() > 0.95, cos
    # interpolate between the projected real images
    assert main(["explore", str(run), "interpolate", "--codes", str(explore / "project-codes.pt"), "--steps", "4"]) == 0
    assert json.loads((explore / "interpolate-slerp.json").read_text())["pairs"] == 2
    np.save(tmp_path / "bad.npy", np.zeros((3, 5), np.float32))
    assert main(["explore", str(run), "interpolate", "--codes", str(tmp_path / "bad.npy")]) == 2
    assert "expected an (N, 100) array" in capsys.readouterr().err

    assert main(["explore", str(run), "pca", "--source", "prior", "-n", "200", "-k", "3", "--columns", "5"]) == 0
    rec = json.loads((explore / "pca-prior.json").read_text())
    assert rec["k"] == 3 and (explore / "pca-prior.png").exists() and (explore / "pca-prior-spectrum.png").exists()

    # Eyeglasses is the rare planted attribute (b = 1: ~16% of codes) that a learned labeller lost
    assert main(["explore", str(run), "attribute", "Smiling", "Eyeglasses", "-n", "2000", "--check", "64",
                 "--rows", "2", "--columns", "5"]) == 0
    out = capsys.readouterr().out
    assert "Smiling along Smiling: labelled share" in out
    rec = json.loads((explore / "attribute-classifier-Smiling+Eyeglasses.json").read_text())
    assert set(rec["results"]) == {"Smiling", "Eyeglasses", "Smiling+Eyeglasses"}
    for name in ("Smiling", "Eyeglasses"):
        found = torch.load(explore / f"direction-{name}.pt")["direction"]
        cos = float(torch.nn.functional.cosine_similarity(found, direction_of(name, 100), dim=0))
        assert cos > 0.9, (name, cos)
        share = rec["results"][name]["share"][name]
        assert len(share) == 5 and rec["results"][name]["monotonic"][name], share
        assert share[0] < 0.2 and share[-1] > 0.8, share
    both = rec["results"]["Smiling+Eyeglasses"]["share"]
    assert both["Smiling"][-1] > both["Smiling"][0] and both["Eyeglasses"][-1] > both["Eyeglasses"][0]
    for name in ("Smiling", "Smiling-walk", "Eyeglasses", "Smiling+Eyeglasses", "Smiling+Eyeglasses-share"):
        assert (explore / f"attribute-classifier-{name}.png").exists(), name

    # the dataset's labels with a VAE's encoder; its projection starts from the encoder's codes
    vae = runs["vae-64-cpu"]
    assert main(["explore", str(vae), "attribute", "Smiling", "--method", "labels", "--fit", "linear",
                 "-n", "100", "--check", "8", "--rows", "2", "--columns", "3"]) == 0
    rec = json.loads((vae / "explore" / "attribute-labels-Smiling.json").read_text())
    assert rec["results"]["Smiling"]["codes"] == "encoded"
    z_dim = json.loads((vae / "config.json").read_text())["model"]["z_dim"]
    made_by_planted_g(tmp_path / "made-vae", 2, z_dim)
    assert main(["explore", str(vae), "project", "--images", str(tmp_path / "made-vae"), "--steps", "80"]) == 0
    rec = json.loads((vae / "explore" / "project.json").read_text())
    # the record's encoder error is that of the encoder's codes for the same images, recomputed here
    from gankit.latent.studio import Studio
    studio = Studio(vae)
    x = studio.real(2, tmp_path / "made-vae")[0]
    encoder_l1 = float((studio.images(studio.family.codes(x)) - x).abs().mean())
    assert rec["init"] == "encoder" and abs(rec["encoder_l1"] - encoder_l1) < 1e-4, (rec["encoder_l1"], encoder_l1)
    assert rec["mean_l1"] < 0.05 < 0.5 * rec["encoder_l1"]  # the (2-step) encoder's codes are far off
    assert main(["explore", str(vae), "pca", "-n", "50", "-k", "2", "--columns", "3"]) == 0
    assert json.loads((vae / "explore" / "pca-encoded.json").read_text())["source"] == "encoded"

    # BEGAN: uniform prior, codes of the projection stay in [-1, 1]
    began = runs["began-64-cpu"]
    assert main(["explore", str(began), "project", "-n", "2", "--steps", "3", "--lr", "1.0"]) == 0
    codes = torch.load(began / "explore" / "project-codes.pt")["z"]
    assert codes.abs().max() <= 1.0

    # bad input: one line naming the problem
    assert main(["explore", str(run), "attribute", "Not_An_Attribute", "-n", "50"]) == 2
    assert "Not_An_Attribute" in capsys.readouterr().err

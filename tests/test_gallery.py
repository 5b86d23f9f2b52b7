"""The gallery command: every family side by side, a table, finished runs reused."""
import numpy as np
import pytest
from PIL import Image

from gankit.cli import main
from gankit.data import prepare
from gankit.training.checkpoint import list_checkpoints

TINY = ["--set", "model.width=8", "--set", "train.batch=8", "--set", "train.steps=2", "--set", "train.log_every=1",
        "--set", "train.sample_every=2", "--set", "train.ckpt_every=2", "--set", "train.grid=4",
        "--set", "train.ema_rampup=0"]  # an average of 2 steps that differs from G


@pytest.fixture(scope="module")
def toy64(tmp_path_factory):
    from gankit.metrics.featnet import train_feature_net
    out = tmp_path_factory.mktemp("data") / "toy64"
    prepare("toyfaces", [], 64, out, count=60, progress=False, workers=1)
    train_feature_net(out, epochs=1, batch=16, progress=False, precision="fp32")
    return out


def test_gallery_trains_scores_draws_and_reuses(toy64, tmp_path, capsys, monkeypatch):
    argv = ["gallery", "--celeba", str(toy64), "--flowers", str(toy64), "--families", "dcgan,vae,began",
            "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "-n", "4", "--n-eval", "64",
            "--quiet", *TINY]
    assert main(argv) == 0
    table = (tmp_path / "out" / "gallery-celeba.md").read_text().splitlines()
    assert table[0].startswith("| family |") and "fd-toyfaces-attr64" in table[0]
    assert [row.split("|")[1].strip() for row in table[2:]] == ["DCGAN", "BEGAN", "VAE"]
    assert all("| 2 |" in row and "| 16 |" in row for row in table[2:])  # steps and images (2 x batch 8)
    flowers = (tmp_path / "out" / "gallery-flowers.md").read_text()
    assert "DiffAugment" in flowers and "VAE" not in flowers  # the GAN families only, augmented
    for name, families in (("celeba", 3), ("flowers", 2)):  # no VAE among the flowers' families
        img = np.asarray(Image.open(tmp_path / "out" / f"gallery-{name}.png"))
        grid = 2 + 2 * 66  # a 2x2 grid of 64-px samples
        assert img.shape[:2] == (18 + grid, families * grid + (families - 1) * 12), img.shape  # labelled, side by side
    # held out: the celeba runs train on 90% of the 60 images, flowers on all of them
    import json
    runs = sorted((tmp_path / "runs").glob("*/*/run.json"))
    data = {p.parent.parent.name: json.loads(p.read_text())["images"] for p in runs}
    assert data["celeba-dcgan"] == 54 and data["flowers-dcgan"] == 60
    # a second call reuses every finished run and its scores
    from gankit.training import Trainer
    monkeypatch.setattr(Trainer, "run", lambda self: pytest.fail("a finished run was trained again"))
    capsys.readouterr()
    assert main(argv) == 0
    assert len(list((tmp_path / "runs").glob("*/*/run.json"))) == 5  # 3 CelebA + 2 flowers runs, none new
    # each row is drawn from what its preset samples: G's average where the preset keeps one, else G
    from gankit.config import load_preset
    from gankit.gallery import CELEBA_FAMILIES, FLOWER_FAMILIES
    rows = {r.split("|")[1].strip(): r.split("|")[3].strip() for r in table[2:]}
    keeps = {label: load_preset(CELEBA_FAMILIES[label]).train.ema > 0 for label in rows}
    assert rows == {label: "EMA" if keeps[label] else "G" for label in rows} and any(keeps.values())
    scores = {f: json.loads(next((tmp_path / "runs" / f"celeba-{f}").glob("*/gallery-metrics.json")).read_text())
              for f in ("dcgan", "vae")}
    import gankit.metrics.registry as registry
    scored, evaluate_many = [], registry.evaluate_many
    monkeypatch.setattr(registry, "evaluate_many", lambda *a, **k: scored.append(a[2]) or evaluate_many(*a, **k))
    # a score cached before the average estimated its own BatchNorm statistics is the old average's: rescored
    cached = next((tmp_path / "runs" / "celeba-dcgan").glob("*/gallery-metrics.json"))
    assert scores["dcgan"]["ema_bn"] == 1024 and scores["vae"]["ema_bn"] == (1024 if keeps["VAE"] else None)
    cached.write_text(json.dumps({k: v for k, v in scores["dcgan"].items() if k != "ema_bn"}))
    assert main(argv) == 0 and len(scored) == 1 and json.loads(cached.read_text()) == scores["dcgan"]
    scored.clear()
    # a preset without the average scores a run that kept one as G itself: the same run, rescored
    assert main(argv + ["--set", "train.ema=0"]) == 0
    # every run that kept an average (DCGAN's and BEGAN's flowers runs too); one without it: cached
    flowers_keep = [load_preset(FLOWER_FAMILIES[f]).train.ema > 0 for f in ("DCGAN", "BEGAN")]
    assert len(scored) == sum(keeps.values()) + sum(flowers_keep)
    again = {f: json.loads(next((tmp_path / "runs" / f"celeba-{f}").glob("*/gallery-metrics.json")).read_text())
             for f in ("dcgan", "vae")}
    assert "| DCGAN | dcgan-k4-64-cpu | G |" in (tmp_path / "out" / "gallery-celeba.md").read_text()
    assert (scores["dcgan"]["ema"], again["dcgan"]["ema"]) == (True, False)
    assert again["dcgan"]["fd"] != scores["dcgan"]["fd"]  # G's distance, not the average's
    assert (again["vae"] == scores["vae"]) != keeps["VAE"]  # G's score is the cached one when there was no average
    scored.clear()
    assert main(argv + ["--set", "train.ema=0"]) == 0 and scored == []  # G's scores, cached


def test_a_run_continued_outside_the_gallery_is_reported_at_its_newest_checkpoint(toy64, tmp_path, capsys):
    import json
    argv = ["gallery", "--celeba", str(toy64), "--families", "dcgan", "--runs", str(tmp_path / "runs"),
            "--out", str(tmp_path / "out"), "-n", "4", "--n-eval", "64", "--quiet", *TINY]
    assert main(argv) == 0
    row = (tmp_path / "out" / "gallery-celeba.md").read_text().splitlines()[2].split("|")
    assert [c.strip() for c in row[4:6]] == ["2", "16"] and row[6].strip() != "?"  # steps, images, minutes
    run = next((tmp_path / "runs" / "celeba-dcgan").glob("0*"))
    assert main(["train", "--resume", str(run), "--set", "train.steps=4", "--quiet"]) == 0
    assert main(argv) == 0
    row = (tmp_path / "out" / "gallery-celeba.md").read_text().splitlines()[2].split("|")
    # its steps, images and training time now (the checkpoints record the time of every session)
    newest = json.loads(list_checkpoints(run / "checkpoints")[-1].read_text())
    assert [c.strip() for c in row[4:8]] == ["4", "32", f"{newest['seconds']['wall'] / 60:.1f}",
                                             f"{newest['seconds']['cpu'] / 60:.1f}"]
    assert "from step 2" in json.loads((run / "gallery.json").read_text())["note"]
    assert json.loads((run / "gallery-metrics.json").read_text())["step"] == 4  # scored at step 4
    # a checkpoint written before training time was recorded: steps known, minutes not
    (run / "gallery.json").write_text(json.dumps(dict(json.loads((run / "gallery.json").read_text()), step=2)))
    newest_path = list_checkpoints(run / "checkpoints")[-1]
    newest_path.write_text(json.dumps({k: v for k, v in newest.items() if k != "seconds"}))
    assert main(argv) == 0
    row = (tmp_path / "out" / "gallery-celeba.md").read_text().splitlines()[2].split("|")
    assert [c.strip() for c in row[4:8]] == ["4", "32", "?", "?"]


def test_gallery_needs_data_and_known_families(tmp_path, capsys):
    assert main(["gallery", "--runs", str(tmp_path)]) == 2
    assert "nothing to do" in capsys.readouterr().err
    assert main(["gallery", "--celeba", str(tmp_path / "missing")]) == 2
    assert "not a prepared dataset" in capsys.readouterr().err


def test_table_names_the_augmentation_the_run_trained_with(tmp_path):
    """The table reads the run's config, not the override strings: `augment.diffaug=` (switched off)
    is no DiffAugment."""
    import json
    from gankit.gallery import augmentation
    for diffaug, ada, want in (("", 0.0, ""), ("color,cutout", 0.6, " + DiffAugment (color,cutout, ADA target 0.6)"),
                               ("translation", 0.0, " + DiffAugment (translation, p 1)")):
        (tmp_path / "config.json").write_text(json.dumps({"augment": {"diffaug": diffaug, "ada_target": ada, "p": 1.0}}))
        assert augmentation(tmp_path) == want
    (tmp_path / "config.json").write_text(json.dumps({"augment": {"diffaug": "", "flip": True, "hsv": True}}))
    assert augmentation(tmp_path) == " + flips, HSV jitter of the real images"


def test_flowers_plan_gives_began_flips_and_the_other_gans_diffaugment(tmp_path):
    """BEGAN's energy D makes what it reconstructs well from augmented reals cheap for G (grey images
    under random saturation, blobs under cutout), so its flowers train on flipped real images with no
    DiffAugment; the other GANs with DiffAugment's translation and ADA."""
    from gankit.config import load_preset
    from gankit.gallery import plan, tuned
    jobs = {j.label: j for j in plan(None, str(tmp_path), None, [])}
    assert jobs["BEGAN"].config.augment.flip and not jobs["BEGAN"].config.augment.diffaug
    # gamma 0.8 on flowers, where the twin's 0.85 collapsed, the rates ramped down over the last 80% of the
    # steps, not the twin's 40%, and the table says so
    twin = load_preset("began-64-cpu")
    assert jobs["BEGAN"].config.gan.gamma == 0.8 != twin.gan.gamma
    assert jobs["BEGAN"].config.optim.lr_rampdown == 0.8 != twin.optim.lr_rampdown
    assert tuned(jobs["BEGAN"]) == ", gan.gamma 0.8, optim.lr_rampdown 0.8" and tuned(jobs["DCGAN"]) == ""
    assert not any(o.startswith("augment.ada_target") for o in jobs["BEGAN"].overrides)
    assert jobs["BEGAN"].ema and jobs["DCGAN"].ema and jobs["WGAN-GP"].ema  # as their presets sample (EMA)
    for label in ("DCGAN", "WGAN-GP"):
        assert jobs[label].config.augment.diffaug == "translation"
        assert "augment.ada_target=0.6" in jobs[label].overrides


def test_score_cache_knows_a_reference_by_its_folder_not_its_spelling(tmp_path, monkeypatch):
    from gankit.gallery import _ref_key
    monkeypatch.chdir(tmp_path)
    assert _ref_key("data/celeba64[9000:]") == _ref_key(f"{tmp_path}/data/celeba64[9000:]")
    assert _ref_key("data/celeba64[9000:]") != _ref_key("data/celeba64[:9000]")
    assert _ref_key("data/flowers64") == str(tmp_path / "data" / "flowers64")
    assert _ref_key("data/a[b]/x[9000:]") == str(tmp_path / "data" / "a[b]" / "x") + "[9000:]"  # the slice at the end


def test_a_reused_run_of_an_older_preset_is_named(tmp_path):
    """The gallery reuses a finished run, and says which training settings its preset no longer gives
    (how it reported or stored, and its average, are not training settings)."""
    import json
    from gankit.config import apply_overrides, load_preset
    from gankit.gallery import Job, drift
    job = Job("celeba", "BEGAN", "began-64-cpu", "d[:9]", "d[9:]", [])
    trained = apply_overrides(load_preset("began-64-cpu"), ["train.ema=0.999", "train.metric_every=400"]).to_dict()
    (tmp_path / "config.json").write_text(json.dumps(trained))
    assert drift(job, tmp_path) == []
    trained["gan"]["lambda_k"] = 0.001
    (tmp_path / "config.json").write_text(json.dumps(trained))
    assert drift(job, tmp_path) == ["gan.lambda_k=0.001"]
    # a run saved before a key existed trained with that key's default: named when the preset differs
    job = Job("celeba", "WGAN-GP", "wgan-gp-64-cpu", "d[:9]", "d[9:]", [])
    trained = load_preset("wgan-gp-64-cpu").to_dict()
    del trained["model"]["d_input_norm"]
    (tmp_path / "config.json").write_text(json.dumps(trained))
    assert drift(job, tmp_path) == ["model.d_input_norm=True"]


def test_families_name_the_family_whatever_design_its_preset_has(tmp_path):
    """`--families wgan` is WGAN with clipping (its k4 twin), not WGAN-GP, and a family's runs live in
    RUNS/<data>-<family> whichever design its preset has."""
    import json
    from gankit.gallery import plan
    (tmp_path / "meta.json").write_text(json.dumps({"count": 100}))
    jobs = plan(str(tmp_path), str(tmp_path), ["wgan", "dcgan"], [])
    assert [(j.label, j.key) for j in jobs] == [("DCGAN", "celeba-dcgan"), ("WGAN (clipping)", "celeba-wgan"),
                                                ("DCGAN", "flowers-dcgan")]
    assert {j.preset for j in jobs} == {"dcgan-k4-64-cpu", "wgan-k4-64-cpu"}
    assert [j.label for j in plan(str(tmp_path), None, ["wgan-gp"], [])] == ["WGAN-GP"]

"""Issue 13's faithfulness fixes and training levers: DiffAugment and ADA, the EMA ramp, the prior
option, BEGAN's initialisation and plateau halving, VAE-GAN's Algorithm 1, CelebA's crop at 128 px."""
import json

import numpy as np
import pytest
import torch

from gankit.config import apply_overrides, load_preset, preset_names
from gankit.data import prepare
from gankit.data.diffaug import AdaptiveP, color, cutout, diff_augment, translation
from gankit.errors import GankitError
from gankit.families import build_family
from gankit.training import Trainer
from tests.conftest import shared, tiny


def test_translation_and_cutout_move_and_blank_pixels_exactly():
    x = torch.arange(2 * 3 * 16 * 16, dtype=torch.float32).view(2, 3, 16, 16) + 1
    g = torch.Generator().manual_seed(0)
    y = translation(x, g)
    for i in range(2):  # each image is its shifted copy with zeros brought in
        match = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if torch.equal(y[i], torch.roll(x[i], (dy, dx), (1, 2)) * _inside(dy, dx, 16))]
        assert len(match) == 1, i
    c = cutout(x, torch.Generator().manual_seed(1))
    zero = (c == 0).all(1)  # every channel blanked together
    assert ((c == 0).any(1) == zero).all()
    for i in range(2):
        rows, cols = zero[i].any(1).sum(), zero[i].any(0).sum()
        assert 1 <= rows <= 8 and 1 <= cols <= 8 and zero[i].sum() == rows * cols  # one square of at most half
        assert torch.equal(c[i][:, ~zero[i]], x[i][:, ~zero[i]])
    # the square is half the side (8 x 8 at 16 px) where it does not cross the border, as the reference's
    many = cutout(torch.ones(2000, 1, 16, 16), torch.Generator().manual_seed(2))
    blanked = (many == 0).flatten(1).sum(1)
    assert blanked.max() == 64 and (blanked == 64).float().mean() > 0.2 and blanked.min() >= 16


def test_color_is_the_references_three_passes():
    # DiffAugment's reference: brightness, then saturation about the channel mean, then contrast about
    # the image mean, each with its own U[0, 1] draw per image in that order
    x = torch.rand(32, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    g = torch.Generator().manual_seed(6)
    b, s, c = (torch.rand(32, 1, 1, 1, generator=g).double() for _ in range(3))
    ref = x + (b - 0.5)
    ref = (ref - ref.mean(1, keepdim=True)) * (s * 2) + ref.mean(1, keepdim=True)
    ref = (ref - ref.mean((1, 2, 3), keepdim=True)) * (c + 0.5) + ref.mean((1, 2, 3), keepdim=True)
    assert torch.allclose(color(x, torch.Generator().manual_seed(6)), ref, atol=1e-6)


def _inside(dy, dx, n):
    m = torch.zeros(n, n)
    m[max(dy, 0):n + min(dy, 0), max(dx, 0):n + min(dx, 0)] = 1
    return m


def test_diffaugment_is_differentiable_seeded_and_respects_p():
    x = (torch.rand(64, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1).requires_grad_(True)
    policy = ("color", "translation", "cutout")
    y = diff_augment(x, policy, 1.0, torch.Generator().manual_seed(3))
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # G's gradient flows through T
    assert torch.equal(y, diff_augment(x, policy, 1.0, torch.Generator().manual_seed(3)))
    with torch.no_grad():
        assert torch.equal(diff_augment(x, policy, 0.0, torch.Generator()), x)
        changed = (diff_augment(x, ("color",), torch.tensor(0.5), torch.Generator().manual_seed(4)) != x).flatten(1).any(1)
        assert 16 < int(changed.sum()) < 48  # about half the images
        b = color(torch.zeros(256, 3, 4, 4), torch.Generator().manual_seed(5))[:, 0, 0, 0]
        assert -0.5 <= b.min() < -0.4 and 0.4 < b.max() <= 0.5  # brightness: U[-0.5, 0.5] on a flat image


def test_adaptive_p_moves_toward_the_target_and_resumes():
    ada = AdaptiveP(0.0, target=0.6, kimg=1.0, device=torch.device("cpu"))
    for _ in range(4):
        ada.observe(torch.ones(100))  # D sure of every real image: r_t = 1 > 0.6
    ada.adjust(400)
    assert float(ada.r) == 1.0 and float(ada.p) == pytest.approx(0.4)  # 400 images / 1000
    ada.observe(-torch.ones(100))
    ada.adjust(400)
    assert float(ada.p) == pytest.approx(0.0)  # falls back, clamped at 0
    other = AdaptiveP(0.0, 0.6, 1.0, torch.device("cpu"))
    other.load(ada.state())
    assert float(other.p) == float(ada.p) and float(other.r) == -1.0


@pytest.mark.parametrize("preset,extra", [("dcgan-32-cpu", ["augment.ada_target=0.6", "augment.p=0.5"]),
                                          ("wgan-gp-32-cpu", []), ("began-64-cpu", ["model.res=32"]),
                                          ("vaegan-64-cpu", ["model.res=32", "augment.ada_target=0.6", "augment.p=0.5"])])
def test_every_family_with_a_discriminator_trains_with_diffaugment(preset, extra, toy32, tmp_path):
    cfg = tiny(preset, "augment.diffaug=color,translation,cutout", "augment.ada_every=1", "augment.ada_kimg=1",
               "train.steps=4", *extra)
    t = Trainer.new(cfg, str(toy32), tmp_path, progress=False)
    last = t.run()
    assert "aug_p" in last and all(np.isfinite(v) for v in last.values() if isinstance(v, float))
    state, _ = __import__("gankit.training.checkpoint", fromlist=["load_latest"]).load_latest(t.run_dir / "checkpoints")
    assert "augment" in state["family"]
    if "augment.ada_target=0.6" in extra:  # p moved by 8 images / 1000 at each of the 4 steps, and was saved
        moves = (float(state["family"]["augment"]["p"]) - cfg.augment.p) / 0.008
        assert "ada_r" in last and float(state["family"]["augment"]["p"]) == pytest.approx(float(t.family.ada.p))
        # four adjustments of one step each way: a net of -4, -2, 0, 2 or 4 steps
        assert abs(moves - round(moves)) < 1e-3 and abs(round(moves)) in (0, 2, 4), moves


def test_diffaugment_options_are_checked():
    with pytest.raises(GankitError, match="augment.diffaug"):
        apply_overrides(load_preset("dcgan-32-cpu"), ["augment.diffaug=colour"])
    with pytest.raises(GankitError, match="no discriminator|has none"):
        apply_overrides(load_preset("vae-64-cpu"), ["augment.diffaug=color"])
    with pytest.raises(GankitError, match="ada_target"):
        apply_overrides(load_preset("began-64-cpu"), ["augment.diffaug=color", "augment.ada_target=0.6"])
    with pytest.raises(GankitError, match="set augment.diffaug too"):  # an adaptive p that nothing would use
        apply_overrides(load_preset("dcgan-32-cpu"), ["augment.ada_target=0.6"])
    with pytest.raises(GankitError, match="N\\(0, I\\)"):  # the KL term's prior
        apply_overrides(load_preset("vae-64-cpu"), ["model.prior=uniform"])


def test_ema_ramp_forgets_the_random_start():
    fam = build_family(tiny("dcgan-32-cpu", "train.ema=0.999"), torch.device("cpu"), None)
    assert fam.ema_decay(0) < 1e-6  # the first update copies G
    assert fam.ema_decay(1000) == pytest.approx(0.5 ** (1 / 50.05), rel=1e-6)  # half-life 5% of the steps
    assert fam.ema_decay(10 ** 6) == pytest.approx(0.999)  # capped by train.ema
    assert fam.ema_decay(None) == 0.999
    flat = build_family(tiny("dcgan-32-cpu", "train.ema=0.999", "train.ema_rampup=0"), torch.device("cpu"), None)
    assert flat.ema_decay(0) == 0.999
    # after 50 steps the ramped average follows G; the flat one is still ~95% the random start
    start = [p.detach().clone() for p in fam.nets["G"].parameters()]
    initial = {k: v.clone() for k, v in fam.nets["G"].state_dict().items()}
    for net in (fam, flat):
        net.nets["G"].load_state_dict(initial)
        net.ema.load_state_dict(initial)
        with torch.no_grad():
            for p in net.nets["G"].parameters():
                p.add_(1.0)  # G moves away from its start by 1 in every weight
        for step in range(50):
            net.update_ema(step)
    ramp_gap = max((e - (s + 1)).abs().max() for e, s in zip(fam.ema.parameters(), start))
    flat_gap = max((e - (s + 1)).abs().max() for e, s in zip(flat.ema.parameters(), start))
    assert ramp_gap < 1e-3 and flat_gap > 0.9


def test_the_average_estimates_batchnorm_statistics_of_its_own():
    """G's running statistics describe G's activations, not the average's: the average re-estimates its
    own before it samples (copying G's is what train.ema_bn_images=0 keeps)."""
    def bn_inputs(net, z):  # the per-channel variance each BatchNorm of `net` sees for codes z (eval mode)
        seen, hooks = [], [m.register_forward_hook(lambda m, x, y: seen.append(x[0].float().var((0, 2, 3))))
                            for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        with torch.no_grad():
            net.eval()(z)
        for h in hooks:
            h.remove()
        return seen

    for images in (1024, 0):
        fam = build_family(tiny("dcgan-32-cpu", "train.ema=0.5", "train.ema_rampup=0",
                                f"train.ema_bn_images={images}"), torch.device("cpu"), None)
        g = fam.nets["G"]
        with torch.no_grad():
            for p in g.parameters():
                p.mul_(3.0)  # G moves away from the average's start ...
            for seed in range(20):  # ... and its statistics follow it
                g.train()(fam.sample_z(64, torch.Generator().manual_seed(seed)))
        fam.update_ema()  # the average is halfway between
        avg = fam.average()
        bns = [m for m in avg.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        g_vars = [m.running_var for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        if images == 0:
            assert all(torch.equal(b.running_var, v) for b, v in zip(bns, g_vars))
            continue
        fresh = bn_inputs(avg, fam.sample_z(2048, torch.Generator().manual_seed(99)))
        # each layer's statistics are the average's own activations (fresh codes: up to sampling error),
        # and far from G's
        for b, var, g_var in zip(bns, fresh, g_vars):
            assert ((b.running_var - var).abs() / var).max() < 0.15
            assert ((b.running_var - g_var).abs() / var).min() > 0.5
        assert fam.state_dict()["ema_bn"]  # a checkpoint records that its statistics are the average's


def test_prior_option():
    for preset, default in (("dcgan-32-cpu", "normal"), ("began-64-cpu", "uniform")):
        assert build_family(tiny(preset, "model.res=32"), torch.device("cpu"), None).prior == default
    fam = build_family(tiny("dcgan-32-cpu", "model.prior=uniform"), torch.device("cpu"), None)
    z = fam.sample_z(2000, torch.Generator().manual_seed(0))
    assert fam.prior == "uniform" and z.abs().max() <= 1 and z.abs().max() > 0.99 and abs(z.std() - 3 ** -0.5) < 0.01
    with pytest.raises(GankitError, match="model.prior"):
        apply_overrides(load_preset("dcgan-32-cpu"), ["model.prior=gaussian"])


def test_began_weights_and_presets_follow_the_paper():
    fam = build_family(tiny("began-64", "model.res=32", "model.width=32"), torch.device("cpu"), None)
    w = torch.cat([m.weight.flatten() for m in fam.nets["D"].modules() if isinstance(m, torch.nn.Conv2d)])
    assert abs(float(w.std()) - 0.02) < 0.002 and abs(float(w.mean())) < 0.002
    cfg = load_preset("began-64")
    assert cfg.model.d_norm == cfg.model.g_norm == "none" and cfg.optim.plateau_factor == 0.5
    assert cfg.model.init == "normal"  # the paper's; the twins' fan-scaled inits were measured (BENCHMARKS.md)
    assert (load_preset("began-64-cpu").model.init, load_preset("began-128-cpu").model.init) == ("xavier", "default")
    # the BEGAN-64 twin flips its real faces; no other twin changes the data
    assert [n for n in preset_names() if n.endswith("-cpu") and load_preset(n).augment.flip
            and not load_preset(n.removesuffix("-cpu")).augment.flip] == ["began-64-cpu"]
    # the 64-px twin's rates fall to zero over its last 40% (BENCHMARKS.md, twenty-first session)
    assert (load_preset("began-64-cpu").optim.lr_rampdown, load_preset("began-128-cpu").optim.lr_rampdown) == (0.4, 0.0)
    with pytest.raises(GankitError, match="plateau_factor"):
        apply_overrides(load_preset("dcgan-32-cpu"), ["optim.plateau_factor=0.5"])


def test_learning_rates_halve_when_m_global_stalls(toy32, tmp_path, monkeypatch):
    cfg = tiny("began-64-cpu", "model.res=32", "optim.plateau_every=2", "train.steps=6", "train.ckpt_every=3",
               "optim.lr_rampdown=0")  # the plateau's halving alone (the twin's ramp: test_learning_rate_rampdown)
    t = Trainer.new(cfg, str(toy32), tmp_path, progress=False)
    measures = [5.0, 5.0, 4.0, 4.0, 4.5, 4.5]  # windows: 5 (best), 4 (falls), 4.5 (stalls: halve)
    step = t.family.step
    monkeypatch.setattr(t.family, "step",
                        lambda real, gen: {**step(real, gen), "M_global": torch.tensor(measures[min(t.step, 5)])})
    t.run()
    assert t.plateau["scale"] == 0.5 and t.plateau["best"] == 4.0
    assert t.family.opts["G"].param_groups[0]["lr"] == pytest.approx(0.5 * cfg.optim.lr_g)
    records = [json.loads(line) for line in (t.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "plateau" in r] == [6]
    resumed = Trainer.resume(t.run_dir, ["train.steps=7"], progress=False)
    assert resumed.plateau["scale"] == 0.5 and resumed.family.opts["D"].param_groups[0]["lr"] == pytest.approx(
        0.5 * cfg.optim.lr_d)


@pytest.mark.parametrize("order", ["larsen", "three-step"])
def test_vaegan_updates_every_part_and_keeps_d_statistics(order):
    from gankit.families.vaegan import running_stats_kept
    fam = build_family(tiny("vaegan-64-cpu", "model.res=32", f"gan.vaegan_update={order}"), torch.device("cpu"), None)
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    before = {k: [p.detach().clone() for p in n.parameters()] for k, n in fam.nets.items()}
    out = fam.step(x, torch.Generator().manual_seed(1))
    for k, n in fam.nets.items():
        assert any(not torch.equal(a, b) for a, b in zip(before[k], n.parameters())), f"{k} did not move"
    assert all(torch.isfinite(v) for v in out.values())
    bn = next(m for m in fam.nets["D"].modules() if isinstance(m, torch.nn.BatchNorm2d))
    saved, count = bn.running_mean.clone(), bn.num_batches_tracked.clone()
    with running_stats_kept(fam.nets["D"]):
        fam.llike(x, x.flip(0))
    assert torch.equal(bn.running_mean, saved) and torch.equal(bn.num_batches_tracked, count)
    assert bn.momentum == 0.1 and bn.track_running_stats
    # one pass over both: identical images have zero L_llike, different ones do not
    assert float(fam.llike(x, x)) == 0 and float(fam.llike(x, x.flip(0))) > 0


def test_larsen_decoder_gradient_is_gamma_llike_minus_gan():
    """The decoder's step uses gamma * L_llike + the non-saturating GAN loss: with gamma = 0 the
    decoder's update does not depend on L_llike's feature layer."""
    updates = {}
    for gamma in (0.0, 1.0):
        torch.manual_seed(0)
        fam = build_family(tiny("vaegan-64-cpu", "model.res=32", "gan.vaegan_update=larsen", f"gan.llike_gamma={gamma}"),
                           torch.device("cpu"), None)
        before = [p.detach().clone() for p in fam.nets["G"].parameters()]
        fam.step(torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1,
                 torch.Generator().manual_seed(1))
        updates[gamma] = torch.cat([(p - b).flatten() for p, b in zip(fam.nets["G"].parameters(), before)])
    assert not torch.allclose(updates[0.0], updates[1.0])


def test_celeba_crop_at_128_is_never_enlarged(tmp_path):
    root = shared("celeba")
    meta = prepare("celeba", [root], 128, tmp_path / "full", images="img_align_celeba", limit=2, progress=False)
    assert meta["crop_px"] == "128x128 of 178x218" and meta["upsampled"] is False
    meta = prepare("celeba", [root], 64, tmp_path / "full64", images="img_align_celeba", limit=2, progress=False)
    assert meta["crop_px"] == "108x108 of 178x218"  # DCGAN's crop below 108 px
    meta = prepare("celeba", [root], 128, tmp_path / "half", limit=2, progress=False)
    assert meta["crop_px"] == "64x64 of 89x109" and meta["upsampled"] is True  # same framing; this copy is too small


def test_cpu_twins_keep_the_algorithm_and_set_a_budget():
    """A `-cpu` twin may change sizes, learning rates, its length and EMA, never the algorithm."""
    tunable = {("model", "width"), ("train", "batch"), ("train", "steps"), ("train", "max_minutes"), ("train", "ema"),
               ("model", "g_width"),  # G's width apart from D's, a size (DCGAN-k4-64 twin: BENCHMARKS.md)
               ("train", "sample_every"), ("train", "ckpt_every"), ("optim", "lr_g"), ("optim", "lr_d"),
               ("optim", "lr_decay"), ("optim", "lr_decay_every"), ("optim", "lr_rampdown"),  # schedules of the rates
               ("train", "clock_rampdown"),  # ... and the ramp down of a run its time limit cuts short
               ("model", "init"),  # the init is a size-dependent choice (BEGAN twin: BENCHMARKS.md)
               # the BEGAN paper's own optional skip connections (section 3.5.1), an architecture choice like
               # the width: the losses, k_t and the updates are the algorithm's (BEGAN-64 twin: BENCHMARKS.md)
               ("model", "skip"),
               ("gan", "lambda_k"),  # BEGAN's k_t gain, a rate like the learning rates (BEGAN twins)
               # BEGAN's diversity ratio, a choice the paper leaves to the user and varies itself (0.3-0.7);
               # the losses and the k_t controller are unchanged (BEGAN-64 twin: BENCHMARKS.md)
               ("gan", "gamma"),
               # critic steps per generator step, a hyper-parameter of WGAN's Algorithm 1 like its rate
               # (WGAN-64 twin: BENCHMARKS.md); the loss, the clipping and RMSProp are the algorithm's
               ("gan", "n_critic"),
               # flips of the real images: they enlarge the data D sees and G then learns its mirrored
               # distribution, which for CelebA's aligned faces is CelebA's (BEGAN-64 twin: BENCHMARKS.md)
               ("augment", "flip")}
    twins = [n for n in preset_names() if n.endswith("-cpu")]
    assert len(twins) == len([n for n in preset_names() if not n.endswith("-cpu")])
    for twin in twins:
        full, cpu = load_preset(twin.removesuffix("-cpu")).to_dict(), load_preset(twin).to_dict()
        changed = {(s, k) for s in full if isinstance(full[s], dict) for k in full[s] if full[s][k] != cpu[s][k]}
        assert changed <= tunable, (twin, changed - tunable)
        # EMA on (full presets: off), and a length of its own
        assert 0.99 <= cpu["train"]["ema"] < 1 and full["train"]["ema"] == 0, twin
        assert cpu["train"]["steps"] != full["train"]["steps"], twin
        # its steps are the budget on the CPU it was tuned on; the time limit stops a slower CPU by itself
        assert cpu["train"]["max_minutes"] == 30 and full["train"]["max_minutes"] == 0, twin
        # a ramp down when the time limit cuts the run short, in the families where it measured better (config.py)
        on = cpu["model"]["family"] in ("dcgan", "began")
        assert cpu["train"]["clock_rampdown"] == (0.3 if on else 0) and full["train"]["clock_rampdown"] == 0, twin
        assert cpu["optim"]["lr_g"] / cpu["optim"]["lr_d"] == full["optim"]["lr_g"] / full["optim"]["lr_d"], twin

"""Losses on hand-computed values."""
import math

import torch
from torch import nn

from gankit.families.wgan import WGAN, clip_weights, gradient_norm, gradient_penalty
from tests.conftest import tiny


class Linear(nn.Module):
    """D(x) = <a, x>: its input gradient is a for every sample, so ||grad|| = ||a||."""

    def __init__(self, a):
        super().__init__()
        self.a = nn.Parameter(a)

    def forward(self, x):
        return (x * self.a).flatten(1).sum(1)


def test_gradient_penalty_of_a_linear_critic():
    torch.manual_seed(0)
    a = torch.randn(1, 3, 4, 4)
    critic = Linear(a)
    real, fake = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    gp = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(1))
    expected = (a.norm().item() - 1) ** 2
    assert math.isclose(gp.item(), expected, rel_tol=1e-5)
    # and the penalty is 0 for a critic whose gradient has unit norm
    critic_unit = Linear(a / a.norm())
    assert gradient_penalty(critic_unit, real, fake, torch.Generator()).item() < 1e-10


def test_gradient_norm_is_nan_safe_at_zero():
    g = torch.zeros(3, 3, 4, 4, requires_grad=True)
    n = gradient_norm(g)
    assert torch.allclose(n, torch.full((3,), 1e-6))
    (n - 1).pow(2).mean().backward()
    assert torch.isfinite(g.grad).all()
    # without the 1e-12 the same formula gives NaN gradients here
    g2 = torch.zeros(3, 3, 4, 4, requires_grad=True)
    (torch.sqrt(g2.pow(2).flatten(1).sum(1)) - 1).pow(2).mean().backward()
    assert torch.isnan(g2.grad).all()


def test_clip_weights_keeps_range():
    net = nn.Linear(10, 10)
    nn.init.normal_(net.weight, 0, 1)
    clip_weights(net, 0.01)
    assert all(p.abs().max() <= 0.01 for p in net.parameters())


def test_wgan_step_clips_critic_and_reports_estimate():
    cfg = tiny("wgan-32-cpu")
    fam = WGAN(cfg, torch.device("cpu"), None)
    x = torch.rand(cfg.train.batch * fam.batches_per_step, 3, 32, 32) * 2 - 1
    out = fam.step(x, torch.Generator().manual_seed(0))
    assert all(p.abs().max() <= cfg.gan.clip + 1e-12 for p in fam.nets["D"].parameters())
    assert set(out) >= {"loss_D", "loss_G", "wasserstein"}
    assert torch.isclose(out["loss_D"], -out["wasserstein"])  # L_D = D(fake) - D(real) without penalty


def test_wgan_gp_step_is_finite():
    cfg = tiny("wgan-gp-32-cpu")
    fam = WGAN(cfg, torch.device("cpu"), None)
    x = torch.rand(cfg.train.batch * fam.batches_per_step, 3, 32, 32) * 2 - 1
    out = fam.step(x, torch.Generator().manual_seed(0))
    assert all(torch.isfinite(v) for v in out.values())
    assert out["gradient_penalty"] > 0
    # L_D = -W + lambda * GP on the last critic batch
    assert torch.isclose(out["loss_D"], -out["wasserstein"] + 10 * out["gradient_penalty"], rtol=1e-5)


def test_per_sample_critics_score_real_and_fake_in_one_pass_unchanged():
    from gankit.families.dcgan import Discriminator
    for norm in ("layer", "instance"):
        torch.manual_seed(0)
        D = Discriminator(32, 8, norm, "conv3").eval()
        real, fake = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
        together = D(torch.cat([real, fake]))
        assert torch.allclose(together, torch.cat([D(real), D(fake)]), atol=1e-6), norm


def test_wgan_critic_bursts_follow_the_reference_schedule():
    for first, every in ((25, 500), (0, 3), (2, 4), (7, 3)):
        cfg = tiny("wgan-32-cpu", "gan.burst_critic=100", f"gan.burst_first={first}", f"gan.burst_every={every}")
        fam = WGAN(cfg, torch.device("cpu"), None)
        per_step = [100 if s < first or s % every == 0 else cfg.gan.n_critic for s in range(1200)]
        before = [sum(per_step[:s]) for s in range(1201)]
        assert [fam.batches_before(s) for s in range(1201)] == before, (first, every)
    off = WGAN(tiny("wgan-32-cpu"), torch.device("cpu"), None)
    assert [off.batches_before(s) for s in (0, 1, 7)] == [0, 5, 35]

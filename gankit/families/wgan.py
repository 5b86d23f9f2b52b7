"""WGAN (Arjovsky, Chintala, Bottou 2017) and WGAN-GP (Gulrajani et al. 2017), MISSION 1.2.

The critic is DCGAN's discriminator without BatchNorm (LayerNorm or InstanceNorm) and without a
final activation. Per generator update, n_critic critic updates, each on a fresh real batch (with
gan.burst_critic, the reference code's bursts: that many at the first 25 updates and every 500th):

    L_D = D(G(z)) - D(x)                                   (+ weight clipping to [-c, c])
    L_D = D(G(z)) - D(x) + lambda (||grad D(x_hat)||_2 - 1)^2,  x_hat = eps x + (1 - eps) G(z)
    L_G = -D(G(z))

The Wasserstein estimate E[D(x)] - E[D(G(z))] is logged as the convergence measure.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import Config
from ..errors import GankitError
from .base import Family
from .dcgan import build_networks


def gradient_norm(grad: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norm sqrt(sum g^2 + 1e-12): finite value and gradient even where g = 0."""
    return torch.sqrt(grad.float().pow(2).flatten(1).sum(1) + 1e-12)


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, gen: torch.Generator,
                     amp=None) -> torch.Tensor:
    """mean over the batch of (||grad_x critic(x_hat)|| - 1)^2 at random interpolates x_hat."""
    eps = torch.rand(real.shape[0], 1, 1, 1, generator=gen, device=real.device)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    with amp if amp is not None else torch.autocast(real.device.type, enabled=False):
        score = critic(x_hat)
    (grad,) = torch.autograd.grad(score.sum(), x_hat, create_graph=True)
    return (gradient_norm(grad) - 1).pow(2).mean()


def clip_weights(net: nn.Module, c: float) -> None:
    """Clamp every parameter of the critic to [-c, c] (WGAN's Lipschitz constraint)."""
    with torch.no_grad():
        for p in net.parameters():
            p.clamp_(-c, c)


class WGAN(Family):
    """Weight clipping when gan.clip > 0, gradient penalty when gan.gp_lambda > 0."""

    name = "wgan"
    plots = {"losses": ["loss_D", "loss_G"], "wasserstein": ["wasserstein"]}

    def __init__(self, cfg: Config, device: torch.device, precision: torch.dtype | None):
        super().__init__(cfg, device, precision)
        if cfg.gan.gp_lambda > 0:
            self.no_compile = ("D",)  # compiled graphs do not support the penalty's double backward
            self.plots = dict(self.plots, penalty=["gradient_penalty"])
        self.nets = build_networks(cfg)
        self.finish_setup()

    @classmethod
    def check(cls, cfg: Config) -> None:
        if cfg.model.d_norm == "batch" and cfg.gan.gp_lambda > 0:
            raise GankitError("config: model.d_norm=batch is invalid with a gradient penalty "
                              "(the penalty is per sample); use layer or instance")

    @property
    def batches_per_step(self) -> int:
        return self.cfg.gan.n_critic

    def batches_before(self, step: int) -> int:
        """n_critic batches a step; with bursts, burst_critic at steps < burst_first and at every
        multiple of burst_every (Arjovsky et al.'s main.py: Diters 100 while gen_iterations < 25 or
        gen_iterations % 500 == 0)."""
        g = self.cfg.gan
        if not g.burst_critic:
            return step * g.n_critic
        bursts = min(step, g.burst_first)
        if step > g.burst_first:  # multiples of burst_every in [burst_first, step)
            bursts += (step - 1) // g.burst_every - (g.burst_first - 1) // g.burst_every
        return step * g.n_critic + bursts * (g.burst_critic - g.n_critic)

    def step(self, real: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """One critic update per train.batch images of `real` (n_critic batches, or a burst's), then G's."""
        G, D = self.fast["G"], self.fast["D"]
        g, batch = self.cfg.gan, self.cfg.train.batch
        out: dict[str, torch.Tensor] = {}
        for real_k in real.split(batch):
            z = self.sample_z(real_k.shape[0], gen)
            with torch.no_grad(), self.amp():
                fake = G(z)
            with self.amp():
                if self.cfg.model.d_norm == "batch":  # batch statistics: real and fake apart
                    s_real, s_fake = D(self.d_view(real_k, gen)).float(), D(self.d_view(fake, gen)).float()
                else:  # per-sample norms: one critic pass over both halves is the same, and faster
                    both = self.d_view(torch.cat([real_k, fake.to(real_k.dtype)]), gen)
                    s_real, s_fake = D(both).float().chunk(2)
                d_real, d_fake = s_real.mean(), s_fake.mean()
            loss_d = d_fake - d_real
            # ADA's signal for a critic, whose scores have no zero point: real scored above the mean fake
            self.ada.observe(torch.sign(s_real.detach() - d_fake.detach()))
            if g.gp_lambda > 0:
                # with DiffAugment the penalty holds the critic D(T(.)) that the loss uses to 1-Lipschitz,
                # at interpolates of the un-augmented real and fake images
                critic = (lambda v: D(self.d_view(v, gen))) if self.diffaug else D
                gp = gradient_penalty(critic, real_k, fake.float(), gen, self.amp())
                loss_d = loss_d + g.gp_lambda * gp
                out["gradient_penalty"] = gp.detach()
            self.apply({"D": loss_d})
            if g.clip > 0:
                clip_weights(self.nets["D"], g.clip)

        z = self.sample_z(batch, gen)
        with self.amp(), self.frozen(self.nets["D"]):
            loss_g = -D(self.d_view(G(z), gen)).float().mean()
        self.apply({"G": loss_g})
        out.update(loss_D=loss_d.detach(), loss_G=loss_g.detach(), wasserstein=(d_real - d_fake).detach())
        return out

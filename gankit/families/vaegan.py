"""VAE-GAN (Larsen, Sonderby, Larochelle, Winther 2015), MISSION 1.4.

The VAE's decoder doubles as the GAN's generator, and its reconstruction error is measured in the
discriminator's features (the output of its first `gan.feature_layer` stages) instead of pixels:

    L_prior = KL(q(z|x) || N(0, I))
    L_llike = 1/2 sum_features (Dis_l(x) - Dis_l(x_tilde))^2,   x_tilde = Dec(z), z ~ q(z|x)
    L_GAN   = log D(x) + log(1 - D(x_tilde)) + log(1 - D(Dec(z_p))),  z_p ~ N(0, I)

`gan.vaegan_update` picks the update of one batch:
  larsen (Algorithm 1 of the paper): one forward pass, then simultaneously
      encoder       <- grad of L_prior + L_llike
      decoder       <- grad of gamma * L_llike - L_GAN   (gamma = gan.llike_gamma; -L_GAN non-saturating)
      discriminator <- grad of the GAN loss on real vs reconstructed vs prior samples
  three-step (MISSION 1.4, seed 003): in turn
      1. encoder + decoder on L_prior + L_llike (discriminator frozen),
      2. the discriminator on real vs reconstructed vs prior samples,
      3. the decoder as a generator against the frozen discriminator (non-saturating GAN loss).

Dis_l(x) and Dis_l(x_tilde) are computed in one pass over both batches, so BatchNorm's per-batch
statistics are shared and cannot hide their difference, and that pass leaves D's running statistics
alone. With DiffAugment on, D's GAN terms see augmented images; L_llike compares the un-augmented
x and x_tilde (one transform per pair would be needed to compare augmented ones).
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from .base import Family
from .dcgan import Discriminator
from .vae import VAE, build_vae_networks, kl_divergence, reparameterise


def bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits.float(), torch.full_like(logits.float(), target))


@contextlib.contextmanager
def running_stats_kept(net: nn.Module):
    """BatchNorm layers normalise by the batch's statistics inside but leave the running ones as they were."""
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for m in norms:  # in train mode: batch statistics, running buffers (and their count) left alone
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True


class VAEGAN(VAE):
    name = "vaegan"
    has_discriminator = True

    @classmethod
    def describe(cls, cfg: Config) -> str:
        return Family.describe.__func__(cls, cfg) + f" update={cfg.gan.vaegan_update}"
    plots = {"losses": ["loss_D", "loss_G", "loss_E"], "vae": ["llike", "kl"]}

    def build_networks(self, cfg: Config) -> dict:
        m = cfg.model
        return dict(build_vae_networks(cfg), D=Discriminator(m.res, m.width, m.d_norm, m.arch, input_norm=m.d_input_norm))

    def llike(self, real: torch.Tensor, x_tilde: torch.Tensor) -> torch.Tensor:
        """L_llike: D's features of real and reconstructed images, from one pass over both."""
        D, n = self.nets["D"], real.shape[0]
        with running_stats_kept(D):
            f = D.features(torch.cat([real.to(x_tilde.dtype), x_tilde]), self.cfg.gan.feature_layer).float()
        f_real, f_tilde = f[:n].detach(), f[n:]
        return 0.5 * (f_tilde - f_real).pow(2).flatten(1).sum(1).mean()

    def step(self, real: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
        if self.cfg.gan.vaegan_update == "larsen":
            return self.step_larsen(real, gen)
        return self.step_three(real, gen)

    def step_larsen(self, real: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
        G, D = self.fast["G"], self.nets["D"]
        gamma, kl_w = self.cfg.gan.llike_gamma, self.cfg.gan.kl_weight
        mu, logvar = self.encode(real)
        z = reparameterise(mu, logvar, gen)
        z_p = self.sample_z(real.shape[0], gen)
        with self.amp():
            x_tilde, x_p = G(z), G(z_p)
            llike = self.llike(real, x_tilde)
            d_real = D(self.d_view(real, gen))
            d_tilde, d_p = D(self.d_view(x_tilde, gen)), D(self.d_view(x_p, gen))
        kl = kl_divergence(mu, logvar).mean()
        loss_e = llike + kl_w * kl
        loss_d = bce(d_real, 1.0) + bce(d_tilde, 0.0) + bce(d_p, 0.0)
        loss_g = bce(d_tilde, 1.0) + bce(d_p, 1.0)  # -L_GAN for the decoder, non-saturating
        self.apply({"E": loss_e, "G": gamma * llike + loss_g, "D": loss_d})
        self.ada.observe(torch.sign(d_real.detach()))
        return {"loss_E": loss_e.detach(), "loss_D": loss_d.detach(), "loss_G": loss_g.detach(),
                "llike": llike.detach(), "kl": kl.detach()}

    def step_three(self, real: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
        G, D = self.fast["G"], self.nets["D"]
        kl_w = self.cfg.gan.kl_weight
        # 1. encoder + decoder: prior and learned-similarity terms, D frozen
        mu, logvar = self.encode(real)
        z = reparameterise(mu, logvar, gen)
        with self.amp(), self.frozen(D):
            llike = self.llike(real, G(z))
        kl = kl_divergence(mu, logvar).mean()
        loss_e = llike + kl_w * kl
        self.apply({"E": loss_e, "G": loss_e})

        # 2. discriminator: real vs reconstructed vs prior samples
        z_p = self.sample_z(real.shape[0], gen)
        with torch.no_grad(), self.amp():
            x_p = G(z_p)
            x_rec = G(z.detach())
        with self.amp():
            d_real = D(self.d_view(real, gen))
            loss_d = bce(d_real, 1.0) + bce(D(self.d_view(x_rec, gen)), 0.0) + bce(D(self.d_view(x_p, gen)), 0.0)
        self.apply({"D": loss_d})
        self.ada.observe(torch.sign(d_real.detach()))

        # 3. the decoder as a generator against the frozen discriminator
        with self.amp(), self.frozen(D):
            loss_g = bce(D(self.d_view(G(z.detach()), gen)), 1.0) + bce(D(self.d_view(G(z_p), gen)), 1.0)
        self.apply({"G": loss_g})
        return {"loss_E": loss_e.detach(), "loss_D": loss_d.detach(), "loss_G": loss_g.detach(),
                "llike": llike.detach(), "kl": kl.detach()}

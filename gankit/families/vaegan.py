"""VAE-GAN (Larsen, Sonderby, Larochelle, Winther 2015), MISSION 1.4.

The VAE's decoder doubles as the GAN's generator, and its reconstruction error is measured in the
discriminator's features (the output of its first `gan.feature_layer` stages) instead of pixels:

    L_prior = KL(q(z|x) || N(0, I))
    L_llike = 1/2 sum_features (Dis_l(x) - Dis_l(x_tilde))^2,   x_tilde = Dec(z), z ~ q(z|x)
    L_GAN   = log D(x) + log(1 - D(x_tilde)) + log(1 - D(Dec(z_p))),  z_p ~ N(0, I)

Each batch trains three parts in turn:
  1. encoder + decoder on L_prior + L_llike (discriminator frozen),
  2. the discriminator on real vs reconstructed vs prior samples,
  3. the decoder as a generator against the frozen discriminator (non-saturating GAN loss).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import Config
from .dcgan import Discriminator
from .vae import VAE, build_vae_networks, kl_divergence, reparameterise


def bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits.float(), torch.full_like(logits.float(), target))


class VAEGAN(VAE):
    name = "vaegan"
    plots = {"losses": ["loss_D", "loss_G", "loss_E"], "vae": ["llike", "kl"]}

    def build_networks(self, cfg: Config) -> dict:
        m = cfg.model
        return dict(build_vae_networks(cfg), D=Discriminator(m.res, m.width, m.d_norm, m.arch))

    def step(self, real: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
        G, D = self.fast["G"], self.nets["D"]
        layer, kl_w = self.cfg.gan.feature_layer, self.cfg.gan.kl_weight
        # 1. encoder + decoder: prior and learned-similarity terms, D frozen
        mu, logvar = self.encode(real)
        z = reparameterise(mu, logvar, gen)
        with self.amp(), self.frozen(D):
            x_tilde = G(z)
            f_real = D.features(real, layer).detach()
            f_tilde = D.features(x_tilde, layer)
        llike = 0.5 * (f_tilde.float() - f_real.float()).pow(2).flatten(1).sum(1).mean()
        kl = kl_divergence(mu, logvar).mean()
        loss_e = llike + kl_w * kl
        for k in ("E", "G"):
            self.opts[k].zero_grad(set_to_none=True)
        loss_e.backward()
        self.opts["E"].step()
        self.opts["G"].step()

        # 2. discriminator: real vs reconstructed vs prior samples
        z_p = self.sample_z(real.shape[0], gen)
        with torch.no_grad(), self.amp():
            x_p = G(z_p)
            x_rec = G(z.detach())
        with self.amp():
            loss_d = bce(D(real), 1.0) + bce(D(x_rec), 0.0) + bce(D(x_p), 0.0)
        self.update(self.opts["D"], loss_d)

        # 3. the decoder as a generator against the frozen discriminator
        with self.amp(), self.frozen(D):
            loss_g = bce(D(G(z.detach())), 1.0) + bce(D(G(z_p)), 1.0)
        self.update(self.opts["G"], loss_g)
        return {"loss_E": loss_e.detach(), "loss_D": loss_d.detach(), "loss_G": loss_g.detach(),
                "llike": llike.detach(), "kl": kl.detach()}

"""VAE (Kingma and Welling 2013), MISSION 1.4: a convolutional encoder to (mu, log sigma^2), the
reparameterisation z = mu + sigma * eps, a convolutional decoder, and the negative ELBO

    loss = sum_pixels (x - x_hat)^2 + kl_weight * KL(N(mu, sigma^2) || N(0, I)),
    KL   = -1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2),

both per image, averaged over the batch (a Gaussian likelihood of fixed variance 1/2).
The encoder is DCGAN's discriminator with 2 Z outputs and the decoder is DCGAN's generator
(`model.arch` picks conv3 or k4), so the three families share one set of tables.
"""
from __future__ import annotations

import torch

from ..config import Config
from ..errors import GankitError
from .base import Family, g_width_text
from .dcgan import Discriminator, Generator


def build_vae_networks(cfg: Config) -> dict:
    m = cfg.model
    return {"E": Discriminator(m.res, m.width, "batch", m.arch, out_dim=2 * m.z_dim),
            "G": Generator(m.z_dim, m.res, m.gen_width, m.g_norm, m.arch)}


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample, summed over the latent dimensions."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    eps = torch.randn(mu.shape, generator=gen, device=mu.device, dtype=mu.dtype)
    return mu + (0.5 * logvar).exp() * eps


class VAE(Family):
    name = "vae"
    plots = {"losses": ["loss", "recon", "kl"]}
    has_discriminator = False
    has_encoder = True
    can_reconstruct = True

    @classmethod
    def check(cls, cfg: Config) -> None:
        if cfg.model.prior == "uniform":
            raise GankitError(f"config: model.prior=uniform: the {cls.name} family's KL term assumes z ~ N(0, I)")

    @classmethod
    def describe(cls, cfg: Config) -> str:
        m = cfg.model
        return f"vae/{m.arch} {m.res}px Z={m.z_dim} width={m.width}{g_width_text(m)} KL weight={cfg.gan.kl_weight:g}"

    def __init__(self, cfg: Config, device: torch.device, precision: torch.dtype | None):
        super().__init__(cfg, device, precision)
        self.nets = self.build_networks(cfg)
        self.finish_setup()

    def build_networks(self, cfg: Config) -> dict:
        return build_vae_networks(cfg)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self.amp():
            h = self.fast["E"](x)
        mu, logvar = h.float().chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def step(self, real: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
        mu, logvar = self.encode(real)
        z = reparameterise(mu, logvar, gen)
        with self.amp():
            recon_x = self.fast["G"](z)
        recon = (recon_x.float() - real).pow(2).flatten(1).sum(1).mean()
        kl = kl_divergence(mu, logvar).mean()
        loss = recon + self.cfg.gan.kl_weight * kl
        self.apply({"E": loss, "G": loss})
        return {"loss": loss.detach(), "recon": recon.detach(), "kl": kl.detach()}

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decoded posterior means of real images (eval mode)."""
        was = {k: n.training for k, n in self.nets.items()}
        for n in self.nets.values():
            n.eval()
        try:
            mu, _ = self.encode(x)
            with self.amp():
                return self.fast["G"](mu).float()
        finally:
            for k, n in self.nets.items():
                n.train(was[k])

    @torch.no_grad()
    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior means (the codes the latent tools and the 2-D view use)."""
        self.nets["E"].eval()
        try:
            return self.encode(x)[0]
        finally:
            self.nets["E"].train()

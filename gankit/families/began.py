"""BEGAN (Berthelot, Schumm, Metz 2017), MISSION 1.3: an autoencoder discriminator and a k_t controller.

    L(v)    = mean |v - D(v)|                                    (L1 per pixel)
    L_D     = L(x) - k_t L(G(z))
    L_G     = L(G(z))
    k_t+1   = clip(k_t + lambda_k (gamma L(x) - L(G(z))), 0, 1),  k_0 = 0
    M_global = L(x) + |gamma L(x) - L(G(z))|                      (convergence measure)

D and G are updated simultaneously, both from the same forward pass. z ~ U[-1, 1]^Z. No BatchNorm,
no dropout, no transposed convolutions; ELU everywhere; the embedding h is linear; weights drawn
from N(0, 0.02) (seed 000, Table 3). The presets halve the learning rates when M_global stalls
(section 4.1; optim.plateau_factor).

Encoder (64x64x3 in), n = width:              Decoder / generator (Z in):
    [conv3 ELU] x3        64x64xn                 linear               8x8xn
    conv3 s2 ELU          32x32xn                 [conv3 ELU] x3       8x8xn
    [conv3 ELU] x2        32x32x2n                nearest up x2, [conv3 ELU] x3   16x16xn
    conv3 s2 ELU          16x16x2n                nearest up x2, [conv3 ELU] x3   32x32xn
    [conv3 ELU] x2        16x16x3n                nearest up x2, [conv3 ELU] x3   64x64xn
    conv3 s2 ELU           8x8x3n                 conv3                64x64x3
    [conv3 ELU] x2         8x8x4n
    linear                 Z        (h)
The 128-px variant adds one more stage to each (5n at 8x8 in the encoder).

The paper's optional improvements (section 3.5.1), off unless set, in G and in D alike:
model.skip: h0, the first decoder tensor (8x8xn), upsampled to each stage's size and concatenated
after every upsampling, so each stage's first conv takes 2n channels.
model.carry_steps: vanishing residuals: every conv between same-sized tensors outputs
carry * in + (1 - carry) * out, carry falling linearly from 1 to 0 over that many steps (the paper: 16,000).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from ..errors import GankitError
from .base import Family, g_width_text


class Carried(nn.Sequential):
    """conv3 ELU between same-sized tensors, with the paper's vanishing residual (section 3.5.1):
    out = carry * in + (1 - carry) * ELU(conv(in)); carry 0 (the plain layer) unless model.carry_steps."""

    def __init__(self, *layers: nn.Module):
        super().__init__(*layers)
        self.register_buffer("carry", torch.zeros(()), persistent=False)  # a tensor: compiled graphs keep it
        self.vanishing = False  # set with carry > 0, so that the plain layer costs nothing extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        return torch.lerp(y, x.to(y.dtype), self.carry.to(y.dtype)) if self.vanishing else y


def conv_elu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    kind = Carried if c_in == c_out and stride == 1 else nn.Sequential
    return kind(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.ELU(inplace=True))


def _stages(res: int) -> int:
    if res not in (32, 64, 128):
        raise ValueError(f"BEGAN networks are built for 32, 64 or 128 px, not {res}")
    return int(math.log2(res)) - 3  # halvings from res down to 8x8


class Encoder(nn.Sequential):
    def __init__(self, res: int = 64, width: int = 128, z_dim: int = 64):
        n = _stages(res)
        layers: list[nn.Module] = [nn.Sequential(conv_elu(3, width), conv_elu(width, width), conv_elu(width, width))]
        c = width
        for i in range(1, n + 1):
            layers.append(conv_elu(c, c, stride=2))  # downsample, keeping the channels
            layers.append(nn.Sequential(conv_elu(c, width * (i + 1)), conv_elu(width * (i + 1), width * (i + 1))))
            c = width * (i + 1)
        layers.append(nn.Sequential(nn.Flatten(), nn.Linear(c * 8 * 8, z_dim)))  # h: linear, no activation
        super().__init__(*layers)


class Decoder(nn.Sequential):
    """Also the generator: the same architecture, other weights. skip: h0 concatenated after each upsampling."""

    def __init__(self, res: int = 64, width: int = 128, z_dim: int = 64, skip: bool = False):
        n = _stages(res)
        block = lambda c_in: nn.Sequential(conv_elu(c_in, width), conv_elu(width, width), conv_elu(width, width))
        layers: list[nn.Module] = [nn.Sequential(nn.Linear(z_dim, width * 8 * 8), nn.Unflatten(1, (width, 8, 8))),
                                   block(width)]
        for _ in range(n):
            up = nn.Upsample(scale_factor=2, mode="nearest")
            layers.append(nn.Sequential(up, block(2 * width if skip else width)))
        layers.append(nn.Conv2d(width, 3, 3, 1, 1))
        super().__init__(*layers)
        self.skip = skip

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if not self.skip:
            return super().forward(z)
        h0 = self[0](z)
        x = self[1](h0)
        if x.is_contiguous(memory_format=torch.channels_last):  # else the concatenation falls back to NCHW
            h0 = h0.contiguous(memory_format=torch.channels_last)
        for up, block in list(self)[2:-1]:
            x = up(x)
            x = block(torch.cat([x, F.interpolate(h0, size=x.shape[-2:], mode="nearest")], 1))
        return self[-1](x)


class AutoencoderD(nn.Module):
    """BEGAN's discriminator: D(v) = decoder(encoder(v)), an image of the same size."""

    def __init__(self, res: int = 64, width: int = 128, z_dim: int = 64, skip: bool = False):
        super().__init__()
        self.encoder = Encoder(res, width, z_dim)
        self.decoder = Decoder(res, width, z_dim, skip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def l1(v: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """L(v) = mean |v - D(v)| over pixels and batch, in fp32."""
    return (v.float() - recon.float()).abs().mean()


def update_k(k: torch.Tensor, loss_real: torch.Tensor, loss_fake: torch.Tensor, gamma: float,
             lambda_k: float) -> torch.Tensor:
    """k_{t+1} = clip(k_t + lambda_k (gamma L(x) - L(G(z))), 0, 1)."""
    return (k + lambda_k * (gamma * loss_real - loss_fake)).clamp(0.0, 1.0)


def m_global(loss_real: torch.Tensor, loss_fake: torch.Tensor, gamma: float) -> torch.Tensor:
    """M_global = L(x) + |gamma L(x) - L(G(z))|."""
    return loss_real + (gamma * loss_real - loss_fake).abs()


class BEGAN(Family):
    name = "began"
    plots = {"losses": ["L_real", "L_fake"], "k_t": ["k_t"], "convergence": ["M_global"]}
    convergence = "M_global"
    prior = "uniform"  # z ~ U[-1, 1]^64
    resolutions = (32, 64, 128)
    can_reconstruct = True  # D is an autoencoder

    @classmethod
    def check(cls, cfg: Config) -> None:
        if cfg.augment.ada_target > 0:
            raise GankitError("config: augment.ada_target: BEGAN's k_t controller already balances D and G and its "
                              "losses carry no real/fake sign; use a fixed augment.p")

    @classmethod
    def describe(cls, cfg: Config) -> str:
        m, g = cfg.model, cfg.gan
        return f"began {m.res}px Z={m.z_dim} width={m.width}{g_width_text(m)} gamma={g.gamma} lambda_k={g.lambda_k}"

    def __init__(self, cfg: Config, device: torch.device, precision: torch.dtype | None):
        super().__init__(cfg, device, precision)
        m = cfg.model
        self.nets = {"G": Decoder(m.res, m.gen_width, m.z_dim, m.skip),
                     "D": AutoencoderD(m.res, m.width, m.z_dim, m.skip)}
        self.k = torch.zeros((), device=device)
        self.finish_setup()
        self.set_carry(self.carry(0))

    def carry(self, step: int) -> float:
        """The vanishing residuals' carry at `step`: 1 -> 0 linearly over model.carry_steps (0 = off)."""
        n = self.cfg.model.carry_steps
        return max(0.0, 1.0 - step / n) if n > 0 else 0.0

    def at_step(self, step: int) -> None:
        carry = self.carry(step)
        if carry != self._carry:  # the nets are walked only while the carry moves, not every step
            self.set_carry(carry)

    def set_carry(self, carry: float) -> None:
        self._carry = carry
        for net in (*self.nets.values(), self.ema):
            for m in net.modules() if net is not None else ():
                if isinstance(m, Carried):
                    m.carry.fill_(carry)
                    m.vanishing = carry > 0

    def step(self, real: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
        G, D = self.fast["G"], self.fast["D"]
        g = self.cfg.gan
        z = self.sample_z(real.shape[0], gen)
        with self.amp():
            # with DiffAugment the autoencoder reconstructs what it sees: L(T(x)) and L(T(G(z)))
            real, fake = self.d_view(real, gen), self.d_view(G(z), gen)
            recon_real, recon_fake = D(real), D(fake)
        loss_real, loss_fake = l1(real, recon_real), l1(fake, recon_fake)
        # simultaneous updates from one forward pass: D's gradient of L_D, G's gradient of L_G
        self.apply({"D": loss_real - self.k * loss_fake, "G": loss_fake})
        loss_real, loss_fake = loss_real.detach(), loss_fake.detach()
        self.k = update_k(self.k, loss_real, loss_fake, g.gamma, g.lambda_k)
        return {"L_real": loss_real, "L_fake": loss_fake, "k_t": self.k.clone(),
                "M_global": m_global(loss_real, loss_fake, g.gamma)}

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """D's autoencoding of real images."""
        with self.amp():
            return self.fast["D"](x).float()

    def extra_state(self) -> dict:
        return {"k": self.k, "carry": self._carry}

    def load_extra_state(self, state: dict) -> None:
        if "k" in state:
            self.k = state["k"].to(self.device)
        self.set_carry(state.get("carry", 0.0))  # checkpoints from before the option: the plain layers

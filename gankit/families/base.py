"""What every model family supplies to the one trainer: networks, optimizers and a per-batch step."""
from __future__ import annotations

import contextlib
import copy
import math
from typing import Callable, Iterator

import torch
from torch import nn

from ..config import Config
from ..data.diffaug import AdaptiveP, diff_augment, parse_policy


def g_width_text(m) -> str:
    """The `describe` suffix naming G's width where it differs from D's; empty otherwise."""
    return f" G-width={m.g_width}" if m.g_width and m.g_width != m.width else ""


# how each model.init draws a conv or linear layer's weights ("default" keeps PyTorch's own draw)
WEIGHT_INITS = {
    # N(0, 0.02) (DCGAN paper; seed 000, Table 3)
    "normal": lambda w: nn.init.normal_(w, 0.0, 0.02),
    # Glorot and Bengio's uniform, variance 2 / (fan_in + fan_out): TensorFlow's default, hence the
    # init of the reference BEGAN code
    "xavier": nn.init.xavier_uniform_,
    # He et al.'s normal, variance 2 / fan_in (rectifiers)
    "kaiming": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
}


def init_weights(module: nn.Module, kind: str) -> None:
    """Draw every conv and linear layer's weights as `kind` says, biases zero. Norm layers keep
    PyTorch's scales of 1, except under "normal", where they come from N(1, 0.02) as the DCGAN paper's."""
    if kind == "default":
        return
    draw = WEIGHT_INITS[kind]
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            draw(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif kind == "normal" and isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)) \
                and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class Family:
    """Base of a model family. Subclasses build `self.nets` and `self.opts` and implement `step`.

    The trainer owns the loop; a family owns only what one batch does to its networks. Networks
    are called through `self.fast[name]`, which is the compiled module when `train.compile` is on.
    """

    name = "family"
    # which metrics the trainer plots together: {plot file stem: [metric names]}
    plots: dict[str, list[str]] = {"losses": ["loss_D", "loss_G"]}
    # the metric plotted with sample thumbnails at several stages (as in the BEGAN paper), if any
    convergence: str | None = None
    # nets that torch.compile must leave alone (double backward is not supported by compiled graphs)
    no_compile: tuple[str, ...] = ()
    # the distribution of z: "normal" (N(0, I)) or "uniform" (U[-1, 1]^d, BEGAN)
    prior: str = "normal"
    # what the family can do, read by config checks, the trainer, the studio and the explorer
    resolutions: tuple[int, ...] = (32, 64)
    has_discriminator = True  # a D that classifies or critics images (DiffAugment acts on what it sees)
    has_encoder = False  # `codes(x)`: images -> latent codes
    can_reconstruct = False  # `reconstruct(x)`: images -> their reconstructions

    @classmethod
    def check(cls, cfg: Config) -> None:
        """Config checks only this family needs (raise GankitError naming the key); Config.validate calls it."""

    @classmethod
    def describe(cls, cfg: Config) -> str:
        """The family's part of a preset's line in `gankit presets`."""
        m = cfg.model
        return f"{cls.name}/{m.arch} {m.res}px Z={m.z_dim} width={m.width}{g_width_text(m)} D-norm={m.d_norm}"

    def __init__(self, cfg: Config, device: torch.device, precision: torch.dtype | None):
        self.cfg = cfg
        self.device = device
        self.precision = precision  # None = fp32, torch.bfloat16 = bf16 autocast
        self.nets: dict[str, nn.Module] = {}
        self.opts: dict[str, torch.optim.Optimizer] = {}
        self.fast: dict[str, nn.Module] = {}
        self.ema: nn.Module | None = None  # moving average of G (train.ema > 0)
        self.use_ema = True  # sampling uses the average when there is one
        self._ema_bn_stale = False  # the average's weights changed since its BatchNorm statistics were estimated
        # called as hook(net name, its parameters with gradients) before every optimizer step (see `apply`)
        self.step_hooks: list[Callable[[str, list[torch.Tensor]], None]] = []
        if cfg.model.prior:
            self.prior = cfg.model.prior
        a = cfg.augment
        self.diffaug = parse_policy(a.diffaug)  # DiffAugment of everything D sees (data/diffaug.py)
        self.ada = AdaptiveP(a.p, a.ada_target, a.ada_kimg, device)

    # --- set-up helpers used by subclasses ----------------------------------------------------------
    def finish_setup(self) -> None:
        """Initialise the weights (model.init), move nets to the device and memory format, build
        optimizers, compile if asked."""
        for name, net in self.nets.items():
            init_weights(net, self.cfg.model.init)
            net.to(self.device)
            if self.cfg.train.channels_last:
                net.to(memory_format=torch.channels_last)
        self.opts = self.make_optimizers()
        if self.cfg.train.ema > 0:
            self.ema = copy.deepcopy(self.nets["G"]).eval().requires_grad_(False)
        for name, net in self.nets.items():
            if self.cfg.train.compile and name not in self.no_compile:
                self.fast[name] = torch.compile(net)
            else:
                self.fast[name] = net

    def ema_decay(self, step: int | None = None) -> float:
        """The average's decay for the update after `step` steps: train.ema, its half-life capped at
        train.ema_rampup x the steps done (stylegan2-ada's ema_rampup), so the first grids show the
        current G instead of the random start. None: the plain decay."""
        decay, rampup = self.cfg.train.ema, self.cfg.train.ema_rampup
        if step is None or rampup <= 0:
            return decay
        half_life = min(math.log(0.5) / math.log(decay), rampup * (step + 1))
        return 0.5 ** (1.0 / half_life)

    @torch.no_grad()
    def update_ema(self, step: int | None = None) -> None:
        """ema <- decay * ema + (1 - decay) * G, parameters in place. Its BatchNorm statistics are
        re-estimated from the average itself when it is next used (`average`), or copied from G with
        train.ema_bn_images=0."""
        if self.ema is None:
            return
        g = self.nets["G"]
        torch._foreach_lerp_(list(self.ema.parameters()), list(g.parameters()), 1.0 - self.ema_decay(step))
        if self.cfg.train.ema_bn_images > 0:
            self._ema_bn_stale = True
        else:
            for b_ema, b in zip(self.ema.buffers(), g.buffers()):
                b_ema.copy_(b)

    @torch.no_grad()
    def average(self) -> nn.Module:
        """The moving average of G, ready to sample: when its weights changed since, its BatchNorm
        running statistics are first re-estimated from its own outputs (train mode, a cumulative mean
        over train.ema_bn_images codes of a fixed seed, in batches of train.batch; torch's SWA
        update_bn). Deterministic, so every use and every rank sees the same statistics."""
        if self._ema_bn_stale:
            self._ema_bn_stale = False
            batch, n = self.cfg.train.batch, self.cfg.train.ema_bn_images
            gen = torch.Generator(self.device).manual_seed(0x5EED)
            codes = (self.sample_z(min(batch, n - i), gen) for i in range(0, n, batch))
            with self.amp():
                torch.optim.swa_utils.update_bn(codes, self.ema)
        return self.ema

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        o = self.cfg.optim
        lrs = {"G": o.lr_g, "D": o.lr_d}
        fused = self.device.type in ("cpu", "cuda")
        out = {}
        self.base_lr = {}
        for name, net in self.nets.items():
            lr = self.base_lr[name] = lrs.get(name, o.lr_g)
            if o.name == "adam":
                out[name] = torch.optim.Adam(net.parameters(), lr=lr, betas=(o.beta1, o.beta2), fused=fused)
            else:
                out[name] = torch.optim.RMSprop(net.parameters(), lr=lr, foreach=True)
        return out

    def scale_lr(self, factor: float) -> None:
        """Set every optimizer's learning rate to its configured value times `factor` (for decay)."""
        for name, opt in self.opts.items():
            for group in opt.param_groups:
                group["lr"] = self.base_lr[name] * factor

    def amp(self):
        """Autocast context for forward passes (bf16 where enabled, a no-op in fp32)."""
        return torch.autocast(self.device.type, dtype=self.precision or torch.float32,
                              enabled=self.precision is not None)

    def d_view(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """What the discriminator sees of images x, real or generated: x through DiffAugment when
        augment.diffaug is on (differentiable, so G's gradient flows through it), else x."""
        if not self.diffaug:
            return x
        return diff_augment(x, self.diffaug, self.ada.p if self.ada.adaptive else self.cfg.augment.p, gen)

    def augment_metrics(self) -> dict[str, torch.Tensor]:
        """The augmentation probability and ADA's r_t, logged with every step while DiffAugment is on."""
        if not self.diffaug:
            return {}
        out = {"aug_p": self.ada.p.clone()}
        if self.ada.adaptive:
            out["ada_r"] = self.ada.r.clone()
        return out

    @staticmethod
    @contextlib.contextmanager
    def frozen(net: nn.Module) -> Iterator[None]:
        """No weight gradients for `net` inside (gradients still flow through it to its input)."""
        flags = [p.requires_grad for p in net.parameters()]
        net.requires_grad_(False)
        try:
            yield
        finally:
            for p, f in zip(net.parameters(), flags):
                p.requires_grad_(f)

    def apply(self, losses: dict[str, torch.Tensor]) -> None:
        """The one place where optimizers step. Each named net's optimizer steps on the gradient of its
        own loss with respect to its own weights; one forward pass may feed several (BEGAN's L_D and L_G,
        VAE-GAN's Algorithm 1), and several names may share one loss (one backward pass for all). Before
        each step the trainer's hooks see the gradients (averaging over torchrun ranks, clipping, the
        norm that the non-finite check reads)."""
        groups: dict[int, list[str]] = {}  # nets sharing one loss object: one backward pass for all
        for name, loss in losses.items():
            groups.setdefault(id(loss), []).append(name)
        grads: dict[str, tuple] = {}
        for i, names in enumerate(groups.values()):
            params = [[p for p in self.nets[n].parameters() if p.requires_grad] for n in names]
            flat = torch.autograd.grad(losses[names[0]], [p for ps in params for p in ps],
                                       retain_graph=i < len(groups) - 1, allow_unused=True)
            for n, ps in zip(names, params):
                grads[n], flat = (ps, flat[:len(ps)]), flat[len(ps):]
        for name, (params, gs) in grads.items():
            self.opts[name].zero_grad(set_to_none=True)
            for p, g in zip(params, gs):
                # as backward's accumulation does: a gradient in its parameter's layout (autograd.grad may
                # return expanded or otherwise strided results, e.g. through the gradient penalty's double
                # backward, and fused optimizers read gradient memory in the parameter's order)
                p.grad = g if g is None or g.stride() == p.stride() else torch.empty_like(p).copy_(g)
            for hook in self.step_hooks:
                hook(name, params)
            self.opts[name].step()

    # --- the interface the trainer calls -------------------------------------------------------------
    @property
    def batches_per_step(self) -> int:
        """Real batches (of train.batch images) an ordinary step consumes (n_critic for WGAN critics)."""
        return 1

    def batches_before(self, step: int) -> int:
        """Real batches steps 0 .. step-1 consume: the data stream's position at `step` (WGAN's critic
        bursts make some steps longer)."""
        return step * self.batches_per_step

    def sample_z(self, n: int, gen: torch.Generator) -> torch.Tensor:
        if self.prior == "uniform":
            return torch.rand(n, self.cfg.model.z_dim, generator=gen, device=self.device) * 2 - 1
        return torch.randn(n, self.cfg.model.z_dim, generator=gen, device=self.device)

    def to_support(self, z: torch.Tensor) -> torch.Tensor:
        """z moved into the prior's support (clamped to [-1, 1] for a uniform prior)."""
        return z.clamp(-1, 1) if self.prior == "uniform" else z

    def at_step(self, step: int) -> None:
        """Set what follows the step count (BEGAN's vanishing residuals), before the step's update."""

    def step(self, real: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Update the networks on one batch; return detached scalar metrics."""
        raise NotImplementedError

    @torch.no_grad()
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] for codes z, generator in eval mode."""
        return self.decode(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) in eval mode, differentiable in z (the latent tools optimise codes through it); the
        moving average of G when there is one and `use_ema`."""
        if self.ema is not None and self.use_ema:
            with self.amp():
                return self.average()(z).float()
        g = self.nets["G"]
        was_training = g.training
        g.eval()
        try:
            with self.amp():
                return self.fast["G"](z).float()
        finally:
            g.train(was_training)

    def extra_state(self) -> dict:
        """Family state beyond nets and optimizers (BEGAN's k_t, ...): tensors or JSON values."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def state_dict(self) -> dict:
        state = {"nets": {k: v.state_dict() for k, v in self.nets.items()},
                 "opts": {k: v.state_dict() for k, v in self.opts.items()},
                 "extra": self.extra_state()}
        if self.diffaug:
            state["augment"] = self.ada.state()
        if self.ema is not None:
            state["ema"] = self.average().state_dict()
            state["ema_bn"] = self.cfg.train.ema_bn_images > 0  # its statistics are its own
        return state

    def load_state_dict(self, state: dict) -> None:
        for k, net in self.nets.items():
            net.load_state_dict(state["nets"][k])
        for k, opt in self.opts.items():
            opt.load_state_dict(state["opts"][k])
            # checkpoints store tensors contiguous; give each moment its parameter's memory layout
            # (channels_last) again, as fused optimizers walk parameter and state memory in step
            for group in opt.param_groups:
                for p in group["params"]:
                    for name, value in opt.state.get(p, {}).items():
                        if torch.is_tensor(value) and value.shape == p.shape and value.stride() != p.stride():
                            opt.state[p][name] = torch.empty_like(p, dtype=value.dtype).copy_(value)
        self.load_extra_state(state.get("extra", {}))
        if self.diffaug and "augment" in state:
            self.ada.load(state["augment"])
        if self.ema is not None:  # a run that turns the average on when resumed starts it from G
            self.ema.load_state_dict(state["ema"] if "ema" in state else self.nets["G"].state_dict())
            # a checkpoint written before the statistics were re-estimated holds G's: estimate them again
            self._ema_bn_stale = self.cfg.train.ema_bn_images > 0 and not state.get("ema_bn")

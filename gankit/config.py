"""Configs are data: plain dataclasses, a table of named presets, and `key=value` overrides.

The presets reproduce the hyper-parameter tables of MISSION.md; every `*-cpu` twin keeps the
algorithm and shrinks only widths and batch so that it trains in minutes on a laptop CPU.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import GankitError


@dataclass
class ModelConfig:
    family: str = "dcgan"  # dcgan | wgan | began | vae | vaegan (gankit.families.REGISTRY)
    arch: str = "conv3"  # conv3 (3x3 kernels, MISSION table) | k4 (4x4 kernels, DCGAN paper)
    res: int = 64  # 32 or 64 (BEGAN: also 128)
    z_dim: int = 100
    width: int = 128  # channels of D's first layer; doubles at every stage (128..1024 at 64 px)
    # channels of G's last hidden layer (the one next to the image; doubling toward z), where G should be
    # wider or narrower than D (or the VAE's encoder); 0 = width, the mirror of D. BEGAN: G's decoder width
    g_width: int = 0
    d_norm: str = "batch"  # batch | layer | instance | none
    # d_norm also on D's input layer, as the conv3 table has it (the k4 design never puts BatchNorm
    # there); false = that layer un-normalised with a bias, as the DCGAN paper and the WGAN and WGAN-GP
    # reference critics (every DCGAN and WGAN preset): a norm there makes D blind to contrast
    d_input_norm: bool = True
    g_norm: str = "batch"  # batch | none
    # initial weights: normal = N(0, 0.02), biases 0 (DCGAN paper; seed 000's Table 3 for DCGAN, WGAN
    # and BEGAN); default = PyTorch's own (Kaiming-uniform, fan-in scaled, variance 1 / (3 fan_in));
    # xavier = Glorot uniform, variance 2 / (fan_in + fan_out) (TensorFlow's default); kaiming = He
    # normal, variance 2 / fan_in
    init: str = "normal"
    # BEGAN: h0 (the decoder's first tensor) concatenated after every upsampling, in G and D's decoder
    # (Berthelot et al., section 3.5.1, "optional improvements")
    skip: bool = False
    # BEGAN: vanishing residuals, carry 1 -> 0 over this many steps (section 3.5.1; the paper: 16,000); 0 = off
    carry_steps: int = 0
    prior: str = ""  # distribution of z: normal | uniform ("" = the family's: uniform for BEGAN, else normal)

    @property
    def gen_width(self) -> int:
        """G's width: g_width where set, else width."""
        return self.g_width or self.width


@dataclass
class OptimConfig:
    name: str = "adam"  # adam | rmsprop
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lr_decay: float = 1.0  # multiply every learning rate by this every lr_decay_every steps (1 = off)
    lr_decay_every: int = 100_000
    # the last lr_rampdown of train.steps (a fraction; 0 = off): every learning rate falls linearly
    # toward zero, to 1 / (the ramp's steps) of itself at the final step (as CycleGAN's linear decay;
    # when train.max_minutes binds first, train.schedule_clock moves it forward with the time used)
    lr_rampdown: float = 0.0
    # halve (x plateau_factor) every learning rate when the family's convergence measure (BEGAN's M_global)
    # has not fallen by 1% over a window of plateau_every steps (Berthelot et al., section 4.1); 1 = off
    plateau_factor: float = 1.0
    plateau_every: int = 2000


@dataclass
class GanConfig:
    n_critic: int = 1  # critic (D) updates per generator update
    # WGAN's reference code (Arjovsky et al.'s main.py, not the paper's Algorithm 1): burst_critic critic
    # updates, not n_critic, at the first burst_first generator updates and at every burst_every-th; 0 = off
    burst_critic: int = 0
    burst_first: int = 25
    burst_every: int = 500
    clip: float = 0.0  # WGAN weight clipping c; 0 = off
    gp_lambda: float = 0.0  # WGAN-GP penalty weight; 0 = off
    gamma: float = 0.5  # BEGAN diversity ratio: lower = sharper, less diverse
    lambda_k: float = 0.001  # BEGAN k_t learning rate
    kl_weight: float = 1.0  # VAE / VAE-GAN weight of the KL term
    feature_layer: int = 3  # VAE-GAN: D stages whose output measures reconstruction
    vaegan_update: str = "three-step"  # VAE-GAN: three-step (MISSION 1.4) | larsen (the paper's Algorithm 1)
    llike_gamma: float = 1e-2  # VAE-GAN larsen: weight of L_llike against L_GAN in the decoder's update


@dataclass
class AugmentConfig:
    flip: bool = False  # random horizontal flip
    rot90: bool = False  # random rotation by 0/90/180/270 degrees
    hsv: bool = False  # random hue shift, saturation and value scaling
    hue: float = 0.05  # max |hue shift| as a fraction of the colour circle
    saturation: float = 0.2  # saturation scaled by U[1-s, 1+s]
    value: float = 0.2  # value scaled by U[1-v, 1+v]
    # The flips, turns and HSV above enlarge the real data only: G then learns the augmented distribution.
    # DiffAugment (below) transforms everything D sees, real and generated, in both updates: G learns the data.
    diffaug: str = ""  # DiffAugment transforms, e.g. color,translation,cutout ("" = off)
    p: float = 1.0  # probability of each transform per image (fixed; the start value when ada_target > 0)
    ada_target: float = 0.0  # ADA: steer p so that E[sign D(real)] stays at this (e.g. 0.6); 0 = fixed p
    ada_kimg: float = 100.0  # thousands of images for the adaptive p to move from 0 to 1
    ada_every: int = 4  # steps between adjustments of the adaptive p


@dataclass
class TrainConfig:
    batch: int = 128
    steps: int = 10_000  # generator updates
    # stop (with a checkpoint) when the run has trained this long: wall time over every session, as its
    # checkpoints record it (resume with a larger total to go on); 0 = no limit
    max_minutes: float = 0.0
    # when max_minutes would stop the run before `steps` (a slower CPU), optim.lr_rampdown's ramp stands
    # at the later of the step and the same share of `steps` as of the minutes used, so the rates still
    # reach their low end before the limit; it then depends on the clock. False: steps alone (reproducible
    # to the step on any CPU). optim.lr_decay's halvings stay in steps either way
    schedule_clock: bool = True
    # with schedule_clock, while max_minutes is set to stop the run before `steps`: every learning rate also
    # ramps down linearly to zero over this last share of the minutes (optim.lr_rampdown's ramp, spanning
    # the larger of the two shares), so a run that a slower CPU cuts short still ends annealed; 0 = off (the
    # DCGAN and BEGAN CPU twins: 0.3). A run that takes its steps within the limit never sees it
    clock_rampdown: float = 0.0
    nan_retries: int = 3  # on a non-finite loss or weight: roll back to the last checkpoint up to this often
    nan_lr_factor: float = 0.5  # ... multiplying every learning rate by this at each roll-back (1 = keep)
    grad_clip: float = 0.0  # clip each net's gradient to this total norm before its optimizer steps; 0 = off
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (GANKIT_PRECISION when set, else bf16 where the hardware has it) | bf16 | fp32
    channels_last: bool = True
    compile: bool = False
    log_every: int = 10
    sample_every: int = 500
    ckpt_every: int = 1000
    keep_ckpts: int = 3
    grid: int = 64  # images in each sample grid
    ema: float = 0.0  # decay of an exponential moving average of G's weights (e.g. 0.999); 0 = off.
    #                   Sample grids, `gankit sample`, eval and the latent tools use the average when on.
    ema_rampup: float = 0.05  # the average's half-life is at most this share of the steps so far, so it
    #                           forgets the random start early on (stylegan2-ada's ema_rampup); 0 = off
    # BatchNorm statistics of the average: re-estimated from its own outputs for this many codes (a fixed
    # seed) before it is used after its weights changed, as SWA's update_bn does; G's statistics do not
    # describe the average's activations (copied, they raised the DCGAN twin's held-out FD from 7.7 to
    # 9.6 and VAE-GAN's from 15.4 to 22.6, BENCHMARKS.md). 0 = copy G's (stylegan2-ada's way, right
    # only for generators without BatchNorm)
    ema_bn_images: int = 1024
    metric: str = ""  # e.g. fd-celeba-attr10k or fid10k, computed every metric_every steps; "" = off
    metric_every: int = 2000
    metric_ref: str = ""  # reference set for the metric (a prepared dataset caches its statistics)
    metric_features: str = ""  # feature network folder for fd-/kd- metrics (default: METRIC_REF/features)
    metric_raw: bool = True  # with EMA on, also score G itself (logged as METRIC_raw; twice the metric's time)


@dataclass
class Config:
    preset: str = "custom"
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    gan: GanConfig = field(default_factory=GanConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        cfg = cls()
        for key, value in d.items():
            if key == "preset":
                cfg.preset = value
                continue
            section = getattr(cfg, key, None)
            if not dataclasses.is_dataclass(section) or not isinstance(value, dict):
                raise GankitError(f"config: unknown section {key!r}")
            for k, v in value.items():
                if k not in {f.name for f in dataclasses.fields(section)}:
                    raise GankitError(f"config: unknown key {key}.{k}")
                setattr(section, k, _typed(f"{key}.{k}", v, getattr(section, k)))
        cfg.validate()
        return cfg

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def validate(self) -> None:
        """Reject values the code cannot honour, naming the key."""
        from .families import REGISTRY  # the one list of families; each checks what only it needs
        m, o, g, t = self.model, self.optim, self.gan, self.train
        _choice("model.family", m.family, tuple(REGISTRY))
        family = REGISTRY[m.family]
        _choice("model.arch", m.arch, ("conv3", "k4"))
        _choice("model.res", m.res, family.resolutions)
        _choice("model.d_norm", m.d_norm, ("batch", "layer", "instance", "none"))
        _choice("model.g_norm", m.g_norm, ("batch", "none"))
        _choice("optim.name", o.name, ("adam", "rmsprop"))
        _choice("train.precision", t.precision, ("auto", "bf16", "fp32"))
        for key, value in (("model.z_dim", m.z_dim), ("model.width", m.width), ("train.batch", t.batch),
                           ("gan.n_critic", g.n_critic), ("train.log_every", t.log_every),
                           ("train.sample_every", t.sample_every), ("train.ckpt_every", t.ckpt_every),
                           ("train.keep_ckpts", t.keep_ckpts), ("train.grid", t.grid)):
            if value < 1:
                raise GankitError(f"config: {key} must be >= 1, got {value}")
        if m.g_width < 0:
            raise GankitError(f"config: model.g_width must be >= 0 (0 = model.width), got {m.g_width}")
        if t.metric:
            from .metrics.registry import DISTANCES, parse_metric
            if parse_metric(t.metric).kind not in DISTANCES:
                raise GankitError(f"config: train.metric={t.metric}: an in-training metric must be one number where "
                                  f"lower is better (fid, kid, fd-, kd-); use gankit eval for pr, dc and is")
            if not t.metric_ref:
                raise GankitError("config: train.metric needs train.metric_ref (a reference image set)")
            if t.metric_every < 1:
                raise GankitError(f"config: train.metric_every must be >= 1, got {t.metric_every}")
        if t.steps < 0:
            raise GankitError(f"config: train.steps must be >= 0, got {t.steps}")
        for key, value in (("optim.lr_g", o.lr_g), ("optim.lr_d", o.lr_d)):
            if not value > 0:
                raise GankitError(f"config: {key} must be > 0, got {value}")
        if t.nan_retries < 0 or not 0 < t.nan_lr_factor <= 1:
            raise GankitError(f"config: train.nan_retries must be >= 0 and train.nan_lr_factor in (0, 1], "
                              f"got {t.nan_retries} and {t.nan_lr_factor}")
        if t.grad_clip < 0:
            raise GankitError(f"config: train.grad_clip must be >= 0 (0 = off), got {t.grad_clip}")
        if t.max_minutes < 0:
            raise GankitError(f"config: train.max_minutes must be >= 0 (0 = no limit), got {t.max_minutes}")
        if not 0 <= t.clock_rampdown <= 1:
            raise GankitError(f"config: train.clock_rampdown must be in [0, 1] (a share of train.max_minutes), "
                              f"got {t.clock_rampdown}")
        if not 0 <= t.ema < 1:
            raise GankitError(f"config: train.ema must be in [0, 1) (0 = off, e.g. 0.999), got {t.ema}")
        _choice("gan.vaegan_update", g.vaegan_update, ("three-step", "larsen"))
        if g.llike_gamma < 0:
            raise GankitError(f"config: gan.llike_gamma must be >= 0, got {g.llike_gamma}")
        if t.ema_bn_images < 0:
            raise GankitError(f"config: train.ema_bn_images must be >= 0 (0 = copy G's statistics), "
                              f"got {t.ema_bn_images}")
        if t.ema_rampup < 0:
            raise GankitError(f"config: train.ema_rampup must be >= 0 (0 = off), got {t.ema_rampup}")
        _choice("model.prior", m.prior, ("", "normal", "uniform"))
        for key, value in (("skip", m.skip), ("carry_steps", m.carry_steps)):
            if value and m.family != "began":
                raise GankitError(f"config: model.{key} is a BEGAN option (section 3.5.1); family is {m.family}")
        if m.carry_steps < 0:
            raise GankitError(f"config: model.carry_steps must be >= 0 (0 = off), got {m.carry_steps}")
        from .families.base import WEIGHT_INITS  # the one list of draws; "default" keeps PyTorch's
        _choice("model.init", m.init, ("default", *WEIGHT_INITS))
        a = self.augment
        from .data.diffaug import parse_policy
        try:
            policy = parse_policy(a.diffaug)
        except ValueError as e:
            raise GankitError(f"config: augment.diffaug: {e}") from None
        if policy and not family.has_discriminator:
            raise GankitError(f"config: augment.diffaug augments what a discriminator sees; the {m.family} family "
                              f"has none")
        if a.ada_target > 0 and not policy:
            raise GankitError("config: augment.ada_target adapts the probability of DiffAugment's transforms; "
                              "set augment.diffaug too (e.g. color,translation,cutout)")
        if not 0 <= a.p <= 1 or not 0 <= a.ada_target < 1 or a.ada_kimg <= 0 or a.ada_every < 1:
            raise GankitError(f"config: augment.p must be in [0, 1], augment.ada_target in [0, 1), augment.ada_kimg "
                              f"> 0 and augment.ada_every >= 1; got {a.p}, {a.ada_target}, {a.ada_kimg}, {a.ada_every}")
        if not 0 <= g.gamma <= 1:
            raise GankitError(f"config: gan.gamma must be in [0, 1], got {g.gamma}")
        if not 0 < o.lr_decay <= 1 or o.lr_decay_every < 1:
            raise GankitError("config: optim.lr_decay must be in (0, 1] and optim.lr_decay_every >= 1")
        if not 0 <= o.lr_rampdown <= 1:
            raise GankitError(f"config: optim.lr_rampdown must be in [0, 1] (a fraction of train.steps), got {o.lr_rampdown}")
        if not 0 < o.plateau_factor <= 1 or o.plateau_every < 1:
            raise GankitError("config: optim.plateau_factor must be in (0, 1] and optim.plateau_every >= 1")
        if o.plateau_factor < 1 and family.convergence is None:
            raise GankitError(f"config: optim.plateau_factor follows a convergence measure (BEGAN's M_global); "
                              f"the {m.family} family has none")
        if g.clip < 0 or g.gp_lambda < 0:
            raise GankitError("config: gan.clip and gan.gp_lambda must be >= 0")
        if g.burst_critic < 0 or g.burst_first < 0 or g.burst_every < 1:
            raise GankitError(f"config: gan.burst_critic and gan.burst_first must be >= 0 and gan.burst_every >= 1; "
                              f"got {g.burst_critic}, {g.burst_first}, {g.burst_every}")
        if g.burst_critic and m.family != "wgan":
            raise GankitError(f"config: gan.burst_critic is a WGAN option (its critic); family is {m.family}")
        family.check(self)


def _typed(key: str, value: Any, default: Any) -> Any:
    """A value read from a config file, checked against the type of the field's default (an int
    is accepted where a float is expected)."""
    want = type(default)
    ok = (isinstance(value, bool) if want is bool else
          isinstance(value, (int, float)) and not isinstance(value, bool) if want is float else
          isinstance(value, int) and not isinstance(value, bool) if want is int else isinstance(value, want))
    if not ok:
        raise GankitError(f"config: {key} must be a {want.__name__}, got {value!r}")
    return float(value) if want is float else value


def _choice(key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise GankitError(f"config: {key} must be one of {', '.join(map(str, allowed))}; got {value!r}")


# --- presets -----------------------------------------------------------------------------------
# Each entry: description, then the fields that differ from the dataclass defaults.

# D's input layer has no norm, as the DCGAN paper says ("not applying batchnorm to ... the
# discriminator input layer") and the WGAN and WGAN-GP reference critics do; the conv3 table of MISSION
# 1.1 has one there. Right after the first conv a norm makes D(a x) = D(x) for every a > 0 (per image
# for LayerNorm, per batch for BatchNorm): G's WGAN-GP faces went grey and washed out (held-out FD
# 139.1 -> 14.4 without it) and the DCGAN twin scored 13.0 -> 8.6 (BENCHMARKS.md, issue 13)
_CRITIC = dict(d_input_norm=False)
_DCGAN = dict(optim=dict(name="adam", lr_g=2e-4, lr_d=2e-4, beta1=0.5, beta2=0.999), model=_CRITIC)
_WGAN_GP = dict(optim=dict(name="adam", lr_g=1e-4, lr_d=1e-4, beta1=0.0, beta2=0.9),
                gan=dict(n_critic=5, gp_lambda=10.0), model=_CRITIC)
_WGAN_CLIP = dict(optim=dict(name="rmsprop", lr_g=5e-5, lr_d=5e-5), gan=dict(n_critic=5, clip=0.01), model=_CRITIC)

_BEGAN = dict(optim=dict(name="adam", lr_g=1e-4, lr_d=1e-4, beta1=0.5, beta2=0.999, plateau_factor=0.5),
              gan=dict(gamma=0.5, lambda_k=0.001))
_VAE = dict(optim=dict(name="adam", lr_g=2e-4, lr_d=2e-4, beta1=0.5, beta2=0.999))


def _preset(description: str, family: str, arch: str, res: int, z_dim: int, width: int, d_norm: str, batch: int,
            algorithm: dict, g_norm: str = "batch", **sections: dict) -> tuple[str, dict]:
    """One row of the table: the networks, the batch, the algorithm's optimiser and losses."""
    fields = {k: dict(v) for k, v in algorithm.items()}
    fields["model"] = dict(fields.get("model", {}), family=family, arch=arch, res=res, z_dim=z_dim, width=width,
                           d_norm=d_norm, g_norm=g_norm)
    fields["train"] = dict(batch=batch)
    for name, values in sections.items():
        fields[name] = dict(fields.get(name, {}), **values)
    return description, fields


_PRESETS: dict[str, tuple[str, dict]] = {
    "dcgan-64": _preset("DCGAN, conv3 table (MISSION 1.1) but no BatchNorm on D's input layer (DCGAN paper), 64 px, "
                        "batch 128, Adam 2e-4 (0.5, 0.999), Z=100",
                        "dcgan", "conv3", 64, 100, 128, "batch", 128, _DCGAN),
    "dcgan-k4-64": _preset("DCGAN, k4 design (DCGAN paper / pytorch examples), 64 px, BatchNorm D, batch 128",
                           "dcgan", "k4", 64, 100, 64, "batch", 128, _DCGAN),
    "dcgan-32": _preset("DCGAN, conv3 table at 32 px (CIFAR-10), batch 128", "dcgan", "conv3", 32, 100, 128, "batch",
                        128, _DCGAN),
    "dcgan-k4-32": _preset("DCGAN, k4 design at 32 px (CIFAR-10), batch 128", "dcgan", "k4", 32, 100, 64, "batch", 128,
                           _DCGAN),
    "wgan-64": _preset("WGAN, weight clipping c=0.01, RMSProp 5e-5, 5 critic steps, conv3 with LayerNorm, batch 64, "
                       "Z=128", "wgan", "conv3", 64, 128, 128, "layer", 64, _WGAN_CLIP),
    # the k4 networks (4x4 kernels: a transposed conv at stride 2 then gives every output pixel the same
    # number of taps, where 3x3 alternates them, a checkerboard) with the wgan-64 table's LayerNorm critic;
    # its CPU twin is the gallery's WGAN (held-out FD 10.5 and 14.8 under two seeds against the conv3
    # twin's 15.4-15.5 under three, BENCHMARKS.md)
    "wgan-k4-64": _preset("WGAN, weight clipping c=0.01, RMSProp 5e-5, 5 critic steps, k4 design (DCGAN paper, "
                          "WGAN report) with a LayerNorm critic, batch 64, Z=128", "wgan", "k4", 64, 128, 64, "layer",
                          64, _WGAN_CLIP),
    "wgan-gp-64": _preset("WGAN-GP, lambda=10, 5 critic steps, conv3 with LayerNorm critic, batch 128, Adam 1e-4 "
                          "(0, 0.9), Z=128", "wgan", "conv3", 64, 128, 128, "layer", 128, _WGAN_GP),
    "wgan-32": _preset("WGAN, weight clipping, k4 design with InstanceNorm critic (WGAN report), 32 px, batch 64",
                       "wgan", "k4", 32, 128, 64, "instance", 64, _WGAN_CLIP),
    "wgan-gp-32": _preset("WGAN-GP, k4 design with InstanceNorm critic (WGAN report), 32 px, batch 64, Adam 1e-4 "
                          "(0.5, 0.999)", "wgan", "k4", 32, 128, 64, "instance", 64, _WGAN_GP,
                          optim=dict(beta1=0.5, beta2=0.999)),
    "began-64": _preset("BEGAN (MISSION 1.3), 64 px, n=128, Z=64, no BatchNorm, gamma 0.5, lambda_k 0.001, batch 48, "
                        "Adam 1e-4 (0.5, 0.999) halved when M_global stalls", "began", "conv3", 64, 64, 128, "none", 48,
                        _BEGAN, g_norm="none", train=dict(batch=48, log_every=1)),
    "began-128": _preset("BEGAN at 128 px (one more stage), n=128, Z=64, no BatchNorm, batch 48, Adam 1e-4 "
                         "(0.5, 0.999) halved when M_global stalls", "began", "conv3", 128, 64, 128, "none", 48,
                         _BEGAN, g_norm="none", train=dict(batch=48, log_every=1)),
    "vae-64": _preset("VAE, k4 encoder/decoder (DCGAN tables), 64 px, Z=128, KL weight 1, batch 64, Adam 2e-4 "
                      "(0.5, 0.999)", "vae", "k4", 64, 128, 64, "batch", 64, _VAE, gan=dict(kl_weight=1.0)),
    # Larsen et al.'s Algorithm 1, not MISSION 1.4's three-step order (gan.vaegan_update=three-step): on the
    # CPU twin it reached held-out fd-celeba-attr10k 29.6 against 41.9 (BENCHMARKS.md)
    "vaegan-64": _preset("VAE-GAN (Larsen et al., Algorithm 1), k4 networks, 64 px, Z=128, similarity at D's 3rd "
                         "stage, batch 64, Adam 2e-4 (0.5, 0.999)", "vaegan", "k4", 64, 128, 64, "batch", 64, _VAE,
                         gan=dict(kl_weight=1.0, feature_layer=3, vaegan_update="larsen")),
}


# Flowers: the same models with every augmentation on (MISSION 2: flips, 90-degree turns, HSV).
for _name in ("dcgan-64", "wgan-gp-64"):
    _desc, _fields = _PRESETS[_name]
    _PRESETS[_name + "-flowers"] = (_desc + "; flips, 90-degree rotations and HSV jitter on (flowers)",
                                    dict(_fields, augment=dict(flip=True, rot90=True, hsv=True)))

# CPU twins: same algorithm, smaller networks and batches, EMA of G on, a length in steps that trains
# in about 26 minutes at 2 threads on the 2-core AMD EPYC Zen 4 (AVX512-BF16, bf16) the presets were
# last tuned on (`python -m gankit.bench --throughput PRESET` measured s/step, BENCHMARKS.md), and train.max_minutes=30 so that a
# slower CPU stops by itself at half an hour too (a Zen 3 or an Ice Lake in fp32 takes two to three times as
# long per step), a ramp down of its rates following the time used where one helps (train.schedule_clock,
# train.clock_rampdown).
# The comments give s/step at 2 threads on that Zen 4.
# name: (width, batch, steps, other fields); width/batch None = a quarter of the width, half the batch.
CPU_MINUTES = 30.0
# By family: a twin that a slower CPU stops at CPU_MINUTES ramps its rates down to zero over the last 30% of
# them (train.clock_rampdown; where its own optim.lr_rampdown is longer, as began-64-cpu's 0.4, that one); on a
# CPU that takes the twin's steps within the limit nothing changes. Measured on an Ice Lake, each twin cut short
# at one thread, held-out fd-celeba-attr10k with and without it: dcgan-k4-64-cpu at 3,000 of its 11,000 steps
# 10.96 against 12.03 (twenty-third session; its rates' halvings had won at full length too), and BEGAN's ramp
# placed by the clock 19.46 against 21.93 on a Zen 3 (twenty-second). Off where it lost (twenty-fourth session):
# wgan-k4-64-cpu at 4,800 of 12,000 steps 19.61 against 17.47, wgan-gp-64-cpu at 1,443 of 4,600 28.59 against
# 25.80, vaegan-64-cpu at 5,154 of 15,000 21.59 against 15.47, vae-64-cpu at 8,373 of 30,000 39.18 against
# 38.08 (VAE-GAN's and WGAN's lower rates had lost before: halvings at 5,000 and 10,000 steps 20.2 against
# 14.6, WGAN's halving at 8,000 15.55 against 15.4)
CPU_CLOCK_RAMPDOWN = {"dcgan": 0.3, "began": 0.3}
_BEGAN_TWIN = dict(model=dict(init="default"), optim=dict(lr_g=3e-4, lr_d=3e-4), gan=dict(lambda_k=0.01))
_CPU_TWIN: dict[str, tuple] = {
    # DCGAN-64: the learning rates halved at 5,000 and 10,000 steps: held-out fd-celeba-attr10k 7.24
    # against 7.77 at a constant rate (BENCHMARKS.md; halvings every 3,000, the uniform prior, width 40 and
    # batch 32 for the same CPU time and D at twice G's rate all measured worse, a longer average the same,
    # 7.23, and translation under ADA with a target of 0.9, which starts it late, behind); on flowers 0.68
    # with DiffAugment's translation (the k4 twin 0.57, with G at 40 0.49); the 32-px DCGAN twins follow unmeasured
    "dcgan-64": (None, None, 15_000, dict(optim=dict(lr_decay=0.5, lr_decay_every=5_000))),  # 0.103-0.124 s/step
    # DCGAN-k4-64, the gallery's DCGAN (faces and flowers): the DCGAN paper's own networks (4x4 kernels), D at
    # width 24 and G at 40 (model.g_width), the rates halved at a third and two thirds of 11,000 steps. D is
    # three quarters of a step's work (it sees real and fake and back-propagates G's loss), so G at 40 costs
    # 1.36 times the mirror's step at one thread and 11,000 steps take the CPU of the mirror's 15,000:
    # held-out fd-celeba-attr10k 5.76 and 6.39 under two seeds against the mirror's 6.46 and 7.27 (and 6.55
    # at two threads; eighteenth session, BENCHMARKS.md), and 5.93 under a third (twentieth). The mirror
    # (width 24 both) had beaten dcgan-64-cpu's 3x3 networks (7.24) at their CPU; width 32 both (6.93) and
    # the paper's batch 128 (7.33) were no better.
    "dcgan-k4-64": (24, None, 11_000, dict(model=dict(g_width=40), optim=dict(lr_decay=0.5, lr_decay_every=3_667))),
    "dcgan-32": (None, None, 55_000, {}),  # 0.027
    "dcgan-k4-32": (None, None, 75_000, {}),  # 0.020
    # WGAN-64: four times the paper's RMSProp rate for a half-hour run (held-out fd-celeba-attr10k 28.2
    # against 41.1 at twice the rate, 10,500 steps, width 16; halved every 6,000 steps it fell behind) and
    # EMA on (with BatchNorm statistics of its own; with G's copied the average measured far worse than G).
    # Width 32 with two critic steps a generator step, not width 16 with the paper's 5 (n_critic is a
    # hyper-parameter of its Algorithm 1, as the rate and the clip are): about 1.4 times the CPU a step,
    # so 12,000 steps take the CPU the width-16 5-step twin's 17,000 took (39.8 CPU min against 39.6):
    # held-out FD 15.4 against 20.1 (15.7 at 17,000 steps; 15.3-16.0 from 10,000 on, 2,000 samples).
    # At width 16 every lever had ended near 19-21: 2 or 3 critic steps, the reference code's 100-step
    # critic bursts, clip values, and a BatchNorm critic (the WGAN paper's; MISSION's table has LayerNorm,
    # kept) (BENCHMARKS.md, twelfth session). At width 32 the rates halved at 8,000 steps (15.55) and width
    # 40 for the same CPU (8,600 steps, 16.97) measured worse (thirteenth session); one critic step for
    # 18,000 steps led to 10,000 and then its critic went flat and G drifted (18.4, fifteenth session).
    # wgan-32-cpu is unmeasured and keeps 5
    "wgan-64": (32, None, 12_000, dict(optim=dict(lr_g=2e-4, lr_d=2e-4), gan=dict(n_critic=2))),
    # WGAN-GP-64: width 16 (with 5 critic steps 0.342 s/step; on a Zen 3 0.609, width 32 1.653) and Adam 2e-4
    # (0, 0.9) for a half-hour run; 2 critic steps a generator step, not the paper's 5, for 10,400 steps, the
    # CPU (and FLOPs) of 4,600 with 5: a user's 30 minutes on an Ice Lake in fp32 at one thread train 3,310
    # steps and reach held-out fd-celeba-attr10k 14.53 against 25.80 for 1,446 steps with 5 (batch 32 with 5
    # for 2,756 steps: 15.42); at the full length, one thread each, ahead at every evaluation (2,000 samples:
    # 18.1, 9.9, 7.2 at a quarter, half and three quarters of the CPU against 30.8, 16.1, 10.4) (twenty-ninth
    # session, one seed; BENCHMARKS.md); on flowers with the gallery's translation under ADA fd-flowers-class10k
    # 2.00 against 3.28 at the full length, ahead at every evaluation (thirtieth). wgan-gp-32-cpu is unmeasured
    # and keeps 5
    "wgan-gp-64": (16, 64, 10_400, dict(optim=dict(lr_g=2e-4, lr_d=2e-4), gan=dict(n_critic=2))),
    # WGAN-k4-64, the gallery's WGAN on faces: wgan-64-cpu's settings with k4 networks at width 24 (about
    # the same CPU a step, 0.178 against 0.181 s/step at one thread): held-out FD 10.5 and 14.8 under two
    # seeds against 15.37, 15.51 and 15.43 under three, recall 0.50 and 0.34 against 0.32 (sixteenth session)
    "wgan-k4-64": (24, None, 12_000, dict(optim=dict(lr_g=2e-4, lr_d=2e-4), gan=dict(n_critic=2))),
    "wgan-32": (None, None, 25_000, {}),  # 0.058
    "wgan-gp-32": (None, None, 13_000, {}),  # 0.114
    # BEGAN twins (BENCHMARKS.md has each measurement; held-out fd-celeba-attr10k on the 64-px twin):
    # - PyTorch's init, not N(0, 0.02): at width 16 the narrow init's signal fades through the 20
    #   unnormalised layers and the twin collapsed to one image (began-64-cpu: Glorot's, below).
    # - k_t's gain lambda_k 0.01, ten times the paper's: k_t climbs at a rate per step, and in 6,000 steps
    #   (the paper trains for hundreds of thousands) it had reached 0.08 and was still climbing (136 against 156).
    # - Adam 3e-4, three times the paper's rate (still halved when M_global stalls): 109 against 120 at
    #   6,000 steps, recognisable faces where the paper's rate gave blurry look-alikes.
    # - EMA on: at 3e-4 G's FD swings between evaluations and its average is steadier.
    # began-64-cpu only (began-128-cpu stays as above, unmeasured):
    # - the paper's optional skip connections (model.skip, section 3.5.1): 1.2-1.3 times the cost a step,
    #   43.7 at 9,000 steps against 63.8 for the plain twin's 12,000 in more CPU time (vanishing
    #   residuals on top, model.carry_steps=1000: 57.1, off; Adam 5e-4: level).
    # - batch 8, not 16 (a sixth of began-64's 48): 0.47 times the cost a step at two threads, so 14,700
    #   steps take the CPU 9,000 took at 16: 38.9 against 43.7, sharper faces (twelfth session).
    # - gamma 0.85, not 0.5 (the paper's diversity ratio, which it varies from 0.3 to 0.7 itself): 18.8
    #   against 21.7 at 0.7 and 37.1 at 0.5, recall 0.26, 0.20 and 0.03, the average ahead of 0.7's at all six
    #   evaluations; varied faces where 0.5 gave smooth look-alikes (fourteenth session, one run each, and
    #   20.1 under a second seed in the fifteenth; on the plain batch-16 twin at the paper's rate, 6,000
    #   steps, 0.7 had lost to 0.5: 141.6 against 119.9).
    # - EMA 0.998 (half-life 346 steps from step 6,930 on): at gamma 0.7 and 0.85 G swings late (0.7: 21.9
    #   at 12,250 steps, 47.5 at 14,700, 2,000 samples) and the 0.998 average holds (22.2 at both); at 0.5,
    #   where G kept improving to its end, shorter averages were better (0.999 38.9, 0.998 37.1, 0.995 36.5).
    # - Glorot's uniform init (model.init=xavier, TensorFlow's default and so the reference BEGAN code's),
    #   not PyTorch's: at init PyTorch's variance 1 / (3 fan_in) leaves D's code h nearly the same for every
    #   image (its spread across a batch 0.00025 against 0.11) and G's output nearly the same for every z
    #   (0.026 against 0.22; benchmarks/init_signal.py); with Glorot's the twin was ahead at 11 of 12
    #   evaluations and ended at 18.38 and 17.54 under two seeds against 18.81 and 20.12, recall 0.28 and
    #   0.36 against 0.26 and 0.30. He's normal (variance 2 / fan_in) failed: dark textures, 118 at 4,900
    #   steps (twentieth session).
    # - the rates ramped down linearly to zero over the last 40% (optim.lr_rampdown=0.4, from step 8,820):
    #   at a constant 3e-4 the average had stopped gaining from ~10,000 steps on (19,600 steps gained
    #   nothing) and G swung by 5 between evaluations; ramped, 17.56 and 15.31 under two seeds against 18.38
    #   and 17.54 (twenty-first session); over the last 60% 15.99 against 0.4's 15.36 (an Ice Lake's feature
    #   network, twenty-third session). gamma 1.0 collapsed at 11,500 steps; G at 24 ended level (18.08) in
    #   1.26 times the CPU; Z = 128 behind again.
    # - flips of the real faces (augment.flip; a mirrored face is a face, so G's mirrored distribution is
    #   CelebA's): ahead at all six evaluations of seed 0 (35.1, 24.6, 19.1 at 2,450-7,350 steps against
    #   66.5, 29.1, 23.5) and at its end 14.97 against 15.36 held out, and a user's 30-minute run at one
    #   thread, cut short at ~5,850 steps, 19.07 against 20.78 (an Ice Lake's feature network, twenty-fifth
    #   session); seed 1 level at both lengths (14.91 against 14.94; 21.27 against 21.64 at ~5,100 steps,
    #   twenty-sixth session); gamma 0.9 ended level (15.46).
    # - measured level at gamma 0.85 (fifteenth session): the rates halved at 4,900 and 9,800 steps (19.0),
    #   batch 4 for 26,000 steps (19.2); EMA 0.999 behind (19.8); width 24 at batch 4 for the same CPU behind
    #   (32.0 at 10,200 steps against 21.9 at 9,800, 2,000 samples; stopped there, seventeenth session).
    # Width 16: an eighth of began-64's 128. s/step at 2 threads: 0.085-0.098
    "began-64": (16, 8, 14_700, dict(_BEGAN_TWIN, model=dict(_BEGAN_TWIN["model"], skip=True, init="xavier"),
                                     optim=dict(_BEGAN_TWIN["optim"], lr_rampdown=0.4),
                                     gan=dict(_BEGAN_TWIN["gan"], gamma=0.85), train=dict(ema=0.998),
                                     augment=dict(flip=True))),
    "began-128": (16, 16, 2_800, _BEGAN_TWIN),  # 0.529
    # VAE: width 32, half the full preset's, not a quarter: the width-16 VAE had stopped improving with
    # steps (63.5 at 30,000, 62.5 at 40,000) and width 32 reached 56.9 at 17,000, 45.2 at 30,000; EMA on:
    # with BatchNorm statistics of its own the average scored 27.5 against G's 45.2 (held-out
    # fd-celeba-attr10k; with G's statistics copied it had measured worse than G, BENCHMARKS.md)
    "vae-64": (32, None, 30_000, {}),  # 0.051 (width 16: 0.024)
    # VAE-GAN: EMA on: in Algorithm 1, the presets' order, the average with BatchNorm statistics of its
    # own scored 15.4 against G's 29.6 at 9,000 steps (22.6 with G's statistics copied) and 14.6 at the
    # twin's 15,000 at a constant rate, where rates halved at 5,000 and 10,000 ended at 20.2 (BENCHMARKS.md)
    "vaegan-64": (None, None, 15_000, {}),  # 0.101-0.113
}
# EMA 0.999 in every twin (began-64-cpu: 0.998). With train.ema_rampup 0.05 the average's half-life is 5% of the steps so far
# until that reaches 0.999's 693 steps (at step 13,862): a longer decay changes nothing in a shorter run
# (WGAN at 0.9995 matched 0.999 to every digit, thirteenth session); a shorter one binds sooner.
_CPU_TWIN["dcgan-64-flowers"] = _CPU_TWIN["dcgan-64"]
_CPU_TWIN["wgan-gp-64-flowers"] = _CPU_TWIN["wgan-gp-64"]
_INIT_TEXT = {"default": ", PyTorch init", "xavier": ", Glorot init", "kaiming": ", He init"}
for _name in list(_PRESETS):
    _desc, _fields = _PRESETS[_name]
    _twin = json.loads(json.dumps(_fields))
    _width, _batch, _steps, _other = _CPU_TWIN[_name]
    _twin["model"]["width"] = _width or max(16, _twin["model"]["width"] // 4)
    _twin["train"]["batch"] = _batch or max(32, _twin["train"]["batch"] // 2)
    _twin["train"].update(steps=_steps, max_minutes=CPU_MINUTES, ema=0.999,
                          clock_rampdown=CPU_CLOCK_RAMPDOWN.get(_twin["model"]["family"], 0.0),
                          sample_every=200, ckpt_every=500)
    for _section, _values in _other.items():
        _twin.setdefault(_section, {}).update(_values)
    _changed = "".join(f", {k} {v:g}" for v in [_other.get("optim", {})] for k, v in v.items()
                       if k == "lr_g")
    _gain = "".join(f", {k} {_other['gan'][k]:g}" for k in ("lambda_k", "gamma") if k in _other.get("gan", {}))
    _critic = f", {_other['gan']['n_critic']} critic steps" if "n_critic" in _other.get("gan", {}) else ""
    _o = _other.get("optim", {})
    _decay = f", rates x{_o['lr_decay']:g} every {_o['lr_decay_every']:,} steps" if "lr_decay" in _o else ""
    _decay += f", rates to zero over the last {_o['lr_rampdown']:.0%}" if "lr_rampdown" in _o else ""
    _g = f", G width {_twin['model']['g_width']}" if _twin["model"].get("g_width") else ""
    _PRESETS[_name + "-cpu"] = (f"CPU twin of {_name}: width {_twin['model']['width']}{_g}, "
                                f"batch {_twin['train']['batch']}{_changed.replace('lr_g', 'learning rate')}"
                                f"{_decay}, "
                                f"{_steps:,} steps (~26 min on a 2-core Zen 4; a slower CPU stops at "
                                f"{CPU_MINUTES:g} min"
                                f"{', rates ramped down' if _twin['train']['clock_rampdown'] else ''}), "
                                f"{'EMA %g' % _twin['train']['ema'] if _twin['train']['ema'] else 'no EMA'}"
                                f"{_INIT_TEXT.get(_twin['model'].get('init'), '')}"
                                f"{', skip connections' if _twin['model'].get('skip') else ''}"
                                f"{', flips of the real images' if _other.get('augment', {}).get('flip') else ''}"
                                f"{_gain}{_critic}",
                                _twin)


def preset_names() -> list[str]:
    return list(_PRESETS)


def preset_description(name: str) -> str:
    return _PRESETS[name][0]


def load_preset(name: str) -> Config:
    """The Config of a named preset (a fresh copy)."""
    if name not in _PRESETS:
        close = difflib.get_close_matches(name, _PRESETS, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise GankitError(f"unknown preset {name!r}{hint}; `gankit presets` lists them")
    d = json.loads(json.dumps(_PRESETS[name][1]))
    d["preset"] = name
    return Config.from_dict(d)


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply `section.key=value` (or a bare `key=value` when the key names one field) overrides."""
    for item in overrides:
        if "=" not in item:
            raise GankitError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        section_name, field_name = _resolve_key(cfg, key.strip())
        section = getattr(cfg, section_name)
        current = getattr(section, field_name)
        setattr(section, field_name, _parse_value(f"{section_name}.{field_name}", raw.strip(), current))
    cfg.validate()
    return cfg


def _sections(cfg: Config) -> dict[str, Any]:
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if dataclasses.is_dataclass(getattr(cfg, f.name))}


def _resolve_key(cfg: Config, key: str) -> tuple[str, str]:
    sections = _sections(cfg)
    all_keys = [f"{s}.{f.name}" for s, obj in sections.items() for f in dataclasses.fields(obj)]
    if "." in key:
        if key in all_keys:
            return tuple(key.split(".", 1))  # type: ignore[return-value]
    else:
        owners = [k for k in all_keys if k.split(".", 1)[1] == key]
        if len(owners) == 1:
            return tuple(owners[0].split(".", 1))  # type: ignore[return-value]
        if len(owners) > 1:
            raise GankitError(f"--set {key}: ambiguous, say one of {', '.join(owners)}")
    close = difflib.get_close_matches(key, all_keys + [k.split('.', 1)[1] for k in all_keys], n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise GankitError(f"--set {key}: unknown option{hint}")


def _parse_value(key: str, raw: str, current: Any) -> Any:
    try:
        if isinstance(current, bool):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(current, int):
            return int(float(raw)) if float(raw).is_integer() else int(raw)
        if isinstance(current, float):
            return float(raw)
        return raw
    except ValueError:
        raise GankitError(f"--set {key}={raw}: expected a {type(current).__name__}") from None

"""Architectures against the tables of MISSION.md 1.1 and 1.2."""
import dataclasses

import pytest
import torch
from torch import nn

from gankit.config import load_preset
from gankit.families.dcgan import Discriminator, Generator, build_networks


def stage_shapes(net: nn.Sequential, x: torch.Tensor) -> list[tuple]:
    shapes = []
    for block in net:
        x = block(x)
        shapes.append(tuple(x.shape[1:]))
    return shapes


def test_conv3_64_matches_mission_table():
    nets = build_networks(load_preset("dcgan-64"))
    d = stage_shapes(nets["D"], torch.randn(2, 3, 64, 64))
    assert d == [(128, 32, 32), (256, 16, 16), (512, 8, 8), (1024, 4, 4), (1,)]
    g = stage_shapes(nets["G"], torch.randn(2, 100))
    assert g == [(1024, 4, 4), (512, 8, 8), (256, 16, 16), (128, 32, 32), (3, 64, 64)]
    convs = [m for m in nets["D"].modules() if isinstance(m, nn.Conv2d)]
    assert all(c.kernel_size == (3, 3) and c.stride == (2, 2) for c in convs)
    assert isinstance(nets["D"][-1][-1], nn.Linear)
    # BatchNorm on every D layer but the input one, as the DCGAN paper (the table has one there too:
    # model.d_input_norm=true)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in nets["D"].modules()) == 3
    assert isinstance(nets["D"][0][1], nn.Identity) and nets["D"][0][0].bias is not None
    table = load_preset("dcgan-64")
    table.model.d_input_norm = True
    assert sum(isinstance(m, nn.BatchNorm2d) for m in build_networks(table)["D"].modules()) == 4
    assert all(m.negative_slope == 0.2 for m in nets["D"].modules() if isinstance(m, nn.LeakyReLU))
    assert isinstance(nets["G"][-1][-1], nn.Tanh)


def test_k4_designs_at_64_and_32():
    d64 = stage_shapes(Discriminator(64, 64, "instance", "k4"), torch.randn(2, 3, 64, 64))
    assert d64 == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (1,)]
    g64 = stage_shapes(Generator(100, 64, 64, "batch", "k4"), torch.randn(2, 100))
    assert g64 == [(512, 4, 4), (256, 8, 8), (128, 16, 16), (64, 32, 32), (3, 64, 64)]
    d32 = stage_shapes(Discriminator(32, 64, "instance", "k4"), torch.randn(2, 3, 32, 32))
    assert d32 == [(64, 16, 16), (128, 8, 8), (256, 4, 4), (1,)]
    g32 = stage_shapes(Generator(128, 32, 64, "batch", "k4"), torch.randn(2, 128))
    assert g32 == [(256, 4, 4), (128, 8, 8), (64, 16, 16), (3, 32, 32)]
    # 4 transposed convs at 32 px, the first from 1x1 to 4x4
    tconvs = [m for m in Generator(128, 32, 64, "batch", "k4").modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(tconvs) == 4 and tconvs[0].kernel_size == (4, 4) and tconvs[0].stride == (1, 1)


def test_conv3_32():
    nets = build_networks(load_preset("dcgan-32"))
    assert stage_shapes(nets["D"], torch.randn(2, 3, 32, 32)) == [(128, 16, 16), (256, 8, 8), (512, 4, 4), (1,)]
    assert stage_shapes(nets["G"], torch.randn(2, 100))[-1] == (3, 32, 32)


@pytest.mark.parametrize("preset", ["dcgan-k4-64-cpu", "wgan-64-cpu", "began-64-cpu", "vae-64-cpu", "vaegan-64-cpu"])
def test_g_width_widens_the_generator_alone(preset):
    from gankit.errors import GankitError
    from gankit.families import build_family
    cfg = load_preset(preset)
    base = build_family(cfg, torch.device("cpu"), None)
    cfg.model.g_width = cfg.model.width * 2
    cfg.validate()
    wide = build_family(cfg, torch.device("cpu"), None)
    others = [k for k in base.nets if k != "G"]
    assert others and all(sum(p.numel() for p in wide.nets[k].parameters())
                          == sum(p.numel() for p in base.nets[k].parameters()) for k in others)
    # G's last hidden layer has g_width channels: the one before the image-making layer
    last = [m for m in wide.nets["G"].modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))][-1]
    assert last.in_channels == 2 * cfg.model.width
    assert f"G-width={2 * cfg.model.width}" in type(wide).describe(cfg)
    z = torch.rand(2, cfg.model.z_dim) * 2 - 1
    assert wide.generate(z).shape == (2, 3, 64, 64)
    cfg.model.g_width = -1
    with pytest.raises(GankitError, match="model.g_width"):
        cfg.validate()


@pytest.mark.parametrize("preset,norm", [("wgan-gp-64", nn.GroupNorm), ("wgan-64", nn.GroupNorm),
                                         ("wgan-gp-32", nn.InstanceNorm2d), ("wgan-32", nn.InstanceNorm2d)])
def test_wgan_critics_have_no_batchnorm(preset, norm):
    cfg = load_preset(preset)
    d = build_networks(cfg)["D"]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in d.modules())
    assert any(isinstance(m, norm) for m in d.modules())
    assert cfg.model.z_dim == 128
    # the input layer un-normalised, as the reference critics: a norm there would hide contrast
    assert isinstance(d[0][1], nn.Identity) and d[0][0].bias is not None and isinstance(d[1][1], norm)


@pytest.mark.parametrize("norm", ["layer", "instance", "batch"])
@pytest.mark.parametrize("arch", ["conv3", "k4"])
def test_a_norm_on_the_input_layer_hides_contrast(norm, arch):
    """Right after D's first (linear) conv, a norm divides out any positive scale of the input: with it
    D(a x) = D(x) (per image for LayerNorm/InstanceNorm, per batch for BatchNorm), so G gets no signal
    about contrast; model.d_input_norm=false takes it off (the k4 design never has BatchNorm there)."""
    torch.manual_seed(0)
    x = torch.rand(4, 3, 64, 64) * 2 - 1
    for input_norm in (True, False):
        D = Discriminator(64, 16, norm, arch, input_norm=input_norm)
        first = D[0]
        normed = not isinstance(first[1], nn.Identity)
        assert normed == (input_norm and not (arch == "k4" and norm == "batch"))
        assert (first[0].bias is None) == normed  # the un-normalised input conv has its bias
        gap = (D(0.3 * x) - D(x)).abs().max().item()
        assert (gap < 1e-3) if normed else (gap > 1e-2), (input_norm, gap)


@pytest.mark.parametrize("preset", ["dcgan-64-cpu", "began-64-cpu", "wgan-gp-64-cpu"])
def test_model_init(preset):
    """model.init=normal draws every conv/linear weight from N(0, 0.02) (seed 000, Table 3); default
    keeps PyTorch's fan-in-scaled init, whose spread differs layer by layer; xavier and kaiming scale
    each layer's spread to its fans (Glorot: 2 / (fan_in + fan_out); He: 2 / fan_in), biases zero."""
    from gankit.families import build_family
    stds, want, biases = {}, {}, {}
    for init in ("normal", "default", "xavier", "kaiming"):
        cfg = load_preset(preset)
        cfg.model.init = init
        torch.manual_seed(0)
        family = build_family(cfg, torch.device("cpu"), None)
        layers = [m for net in family.nets.values() for m in net.modules()
                  if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and m.weight.numel() > 1000]
        stds[init] = [m.weight.std().item() for m in layers]
        fans = [nn.init._calculate_fan_in_and_fan_out(m.weight) for m in layers]
        want[init] = [(2 / (i + o)) ** 0.5 if init == "xavier" else (2 / i) ** 0.5 for i, o in fans]
        biases[init] = max((m.bias.abs().max().item() for m in layers if m.bias is not None), default=0.0)
    assert all(abs(s - 0.02) < 2e-3 for s in stds["normal"])
    assert max(abs(s - 0.02) for s in stds["default"]) > 0.01
    for init in ("xavier", "kaiming"):
        assert all(abs(s / w - 1) < 0.1 for s, w in zip(stds[init], want[init])), init
        assert biases[init] == 0.0
    assert any(abs(s / w - 1) > 0.3 for s, w in zip(stds["default"], want["kaiming"]))


def test_preset_hyperparameters():
    d = load_preset("dcgan-64")
    assert (d.train.batch, d.optim.name, d.optim.lr_d, d.optim.beta1, d.optim.beta2, d.model.z_dim) == \
        (128, "adam", 2e-4, 0.5, 0.999, 100)
    gp = load_preset("wgan-gp-64")
    assert (gp.gan.gp_lambda, gp.gan.n_critic, gp.optim.lr_d, gp.optim.beta1, gp.optim.beta2, gp.train.batch) == \
        (10.0, 5, 1e-4, 0.0, 0.9, 128)
    w = load_preset("wgan-64")
    assert (w.gan.clip, w.optim.name, w.optim.lr_d, w.gan.n_critic) == (0.01, "rmsprop", 5e-5, 5)
    cpu = load_preset("wgan-gp-64-cpu")
    # the twin keeps the algorithm: the penalty and its weight (its rates and critic steps per G step may
    # differ: tests/test_faithful.py checks the rest)
    assert dataclasses.replace(cpu.gan, n_critic=gp.gan.n_critic) == gp.gan and (cpu.optim.name, cpu.optim.beta1, cpu.optim.beta2) == (gp.optim.name, gp.optim.beta1, gp.optim.beta2)
    assert cpu.model.width < gp.model.width


def test_runs_saved_before_d_input_norm_keep_their_networks():
    """A config.json written before model.d_input_norm existed (no such key) rebuilds the networks it
    trained, a norm on D's input layer, so its checkpoints still load and resume."""
    from gankit.config import Config
    d = load_preset("wgan-gp-64-cpu").to_dict()
    assert d["model"].pop("d_input_norm") is False
    old = Config.from_dict(d)
    assert old.model.d_input_norm is True
    assert isinstance(build_networks(old)["D"][0][1], nn.GroupNorm)

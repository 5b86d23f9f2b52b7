"""Every optimizer step of every family goes through Family.apply, where the trainer's hooks see the
gradients; a new family is one file and one registry line."""
import re
from collections import Counter
from pathlib import Path

import pytest
import torch

from gankit.families import REGISTRY, build_family
from gankit.training import Trainer
from tests.conftest import tiny

EXPECTED = {  # optimizer steps per training step, by net
    "dcgan-32-cpu": {"D": 1, "G": 1},
    "wgan-gp-32-cpu": {"D": 5, "G": 1},
    "wgan-32-cpu": {"D": 5, "G": 1},
    "began-64-cpu": {"D": 1, "G": 1},
    "vae-64-cpu": {"E": 1, "G": 1},
    "vaegan-64-cpu": {"E": 1, "G": 1, "D": 1},  # Larsen et al.'s Algorithm 1: each net once
}
THREE_STEP = {"E": 1, "G": 2, "D": 1}  # VAE-GAN's other order: E and G together, D, then G as a generator


def test_no_family_steps_an_optimizer_itself():
    root = Path(__file__).parent.parent / "gankit" / "families"
    for path in root.glob("*.py"):
        text = path.read_text()
        if path.name == "base.py":
            assert len(re.findall(r"\.step\(\)", text)) == 1  # the one in Family.apply
        else:
            assert not re.search(r"\.step\(\)|\.backward\(|zero_grad", text), path.name


@pytest.mark.parametrize("preset", list(EXPECTED) + ["vaegan-64-cpu three-step"])
def test_every_step_passes_the_hooks(preset):
    name, *order = preset.split()
    cfg = tiny(name, "model.res=32", *([f"gan.vaegan_update={order[0]}"] if order else []))
    family = build_family(cfg, torch.device("cpu"), None)
    hooked, stepped = Counter(), Counter()
    family.step_hooks.append(lambda net, params: hooked.update([net]))
    for net, opt in family.opts.items():
        opt.register_step_pre_hook(lambda *_, net=net: stepped.update([net]))
    real = torch.rand(8 * family.batches_per_step, 3, 32, 32) * 2 - 1
    family.step(real, torch.Generator().manual_seed(0))
    want = THREE_STEP if order else EXPECTED[name]
    assert dict(hooked) == dict(stepped) == want


def test_gradient_clipping_and_norms(toy32, tmp_path):
    t = Trainer.new(tiny("dcgan-32-cpu", "train.steps=3", "train.grad_clip=0.01"), str(toy32), tmp_path,
                    progress=False)
    seen = []
    t.family.step_hooks.append(lambda net, params: seen.append(
        torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None])).item()))
    last = t.run()
    assert seen and max(seen) <= 0.01 * 1.0001  # the trainer's clipping ran before this later hook
    assert last["grad_norm_D"] > 0.01 and last["grad_norm_G"] > 0.01  # logged: the norms before clipping


def test_a_new_family_is_one_file_and_one_registry_line(toy32, tmp_path, monkeypatch):
    from gankit.families.dcgan import DCGAN

    class Hinge(DCGAN):  # the whole family: a different loss, written only in terms of Family.apply
        name = "hinge"

        def step(self, real, gen):
            G, D = self.fast["G"], self.fast["D"]
            fake = G(self.sample_z(real.shape[0], gen))
            loss_d = torch.relu(1 - D(real)).mean() + torch.relu(1 + D(fake.detach())).mean()
            self.apply({"D": loss_d})
            with self.frozen(self.nets["D"]):
                loss_g = -D(fake).mean()
            self.apply({"G": loss_g})
            return {"loss_D": loss_d.detach(), "loss_G": loss_g.detach()}

    monkeypatch.setitem(REGISTRY, "hinge", Hinge)
    t = Trainer.new(tiny("dcgan-32-cpu", "model.family=hinge", "train.steps=2"), str(toy32), tmp_path,
                    progress=False)
    last = t.run()
    assert t.family.name == "hinge" and last["step"] == 2 and "grad_norm_D" in last


@pytest.mark.parametrize("preset", ["dcgan-32-cpu", "wgan-gp-32-cpu", "wgan-gp-64-cpu", "wgan-32-cpu", "began-64-cpu",
                                    "vae-64-cpu", "vaegan-64-cpu"])
def test_apply_equals_backward_and_step(preset):
    """Family.apply's gradients reach the optimizers exactly as loss.backward() would put them (same
    values, and the parameter's memory layout: the penalty's double backward returns strided gradients
    that fused Adam misread before they were laid out like their parameters)."""
    from gankit.families.base import Family

    def backward_and_step(self, losses):  # the textbook update, one loss at a time
        grads = {}
        for name, loss in losses.items():
            params = [p for p in self.nets[name].parameters() if p.requires_grad]
            grads[name] = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        for name, gs in grads.items():
            params = [p for p in self.nets[name].parameters() if p.requires_grad]
            self.opts[name].zero_grad(set_to_none=True)
            for p, g in zip(params, gs):
                if g is not None:
                    p.grad = torch.zeros_like(p)
                    p.grad += g  # accumulation, as backward does
            self.opts[name].step()

    def weights_after(update) -> list[torch.Tensor]:
        torch.manual_seed(0)
        family = build_family(tiny(preset, "model.res=32"), torch.device("cpu"), None)
        family.apply = update.__get__(family)
        real = torch.rand(8 * family.batches_per_step, 3, 32, 32).mul(2).sub(1).contiguous(
            memory_format=torch.channels_last)
        for seed in range(3):
            family.step(real, torch.Generator().manual_seed(seed))
        return [p.detach().clone() for net in family.nets.values() for p in net.parameters()]

    for a, b in zip(weights_after(Family.apply), weights_after(backward_and_step)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)

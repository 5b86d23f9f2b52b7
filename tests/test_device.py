"""One device flows through evaluation, the latent studio and the explorer: every tensor they make is
on the device asked for. On a CPU-only machine the check is strict all the same: the default device is
set to `meta` while they run, so a tensor made without the requested device lands on `meta` and is
counted (or fails to mix with the others)."""
from collections import Counter

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from gankit.metrics.registry import evaluate_many, feature_net_at
from gankit.training import Trainer
from tests.conftest import tiny


class DevicesSeen(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.seen: Counter = Counter()
        self.where: dict = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.seen[t.device.type] += 1
                self.where.setdefault(t.device.type, getattr(func, "__name__", str(func)))
        return out


def strictly_on(device: str):
    """(the default device set to meta, a recorder of every tensor's device)"""
    return torch.device("meta"), DevicesSeen()


def run_everything(run, toy32, device: str) -> Counter:
    from gankit.latent.studio import Studio
    from gankit.serve.app import Explorer
    from tests.planted import plant
    feats = feature_net_at(toy32 / "features")
    import io

    from PIL import Image
    png = io.BytesIO()
    Image.new("RGB", (32, 32), (120, 90, 60)).save(png, format="PNG")
    with pytest.MonkeyPatch.context() as mp:
        plant(mp)  # the planted generator and attribute network (tests/planted.py)
        studio = Studio(run, device=device)
        explorer = Explorer(run, n_pca=2, attributes=("Smiling",), fit_n=200, project_steps=5, device=device)
        family = studio.family
        gen = torch.Generator(family.device).manual_seed(0)
        studio.attribute_probs(studio.images(studio.prior(2)))  # loads the labeller before the check
        meta, seen = strictly_on(device)
        with meta, seen:
            evaluate_many(["fd-toyfaces-attr1k", "pr-toyfaces-attr1k", "dc-toyfaces-attr1k"],
                          lambda n: family.generate(family.sample_z(n, gen)), str(toy32), feats=feats, device=device)
            studio.interpolate(pairs=2, steps=3)
            studio.pca(source="prior", n=64, k=2, columns=3)
            studio.project(n=2, steps=3, restarts=1)
            studio.attribute(["Smiling"], n=64, rows=2, columns=3, check=16)
            s = explorer.sample(1, 2)
            explorer.edit(s["codes"][0], {"PC1": 1.0})
            explorer.interpolate(s["codes"][0], s["codes"][1], 3)
            explorer.project(png.getvalue())
    return seen


def test_every_tensor_is_on_the_requested_device(featnet, toy32, tmp_path):
    t = Trainer.new(tiny("dcgan-32-cpu", "train.steps=2"), str(toy32), tmp_path, progress=False)
    t.run()
    seen = run_everything(t.run_dir, toy32, "cpu")
    assert seen.seen["cpu"] > 100 and set(seen.seen) == {"cpu"}, (dict(seen.seen), seen.where)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_every_tensor_is_on_the_gpu(featnet, toy32, tmp_path):
    t = Trainer.new(tiny("dcgan-32-cpu", "train.steps=2"), str(toy32), tmp_path, progress=False)
    t.run()
    seen = run_everything(t.run_dir, toy32, "cuda")
    assert seen.seen["cuda"] > 100 and seen.seen["meta"] == 0, (dict(seen.seen), seen.where)

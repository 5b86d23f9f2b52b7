"""`gankit export RUN OUT`: a self-contained folder to share a trained generator.

    OUT/config.json        the run's config, the family, the step, which weights, how it was trained
    OUT/model.safetensors  generator.* (the moving average of G when the run has one, else G) and,
                           for VAE and VAE-GAN, encoder.*
    OUT/samples.png        a grid of samples (codes drawn with seed 0)
    OUT/README.md          a model card: what it is, the samples, the metrics on record, how to load it

It follows the conventions of huggingface_hub's ModelHubMixin (config.json beside model.safetensors in
a folder, a README.md card), so `upload_folder` can publish it as it is and a mixin class built from
config.json reads the weights; `gankit.load(OUT)` reads it without the run folder.
"""
from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

from . import __version__
from .errors import GankitError

FORMAT = "gankit-generator/1"


def is_exported(path: str | Path) -> bool:
    config = Path(path) / "config.json"
    if not config.exists():
        return False
    try:
        return json.loads(config.read_text()).get("format") == FORMAT
    except ValueError:
        return False


def export(run: str | Path, out: str | Path, n: int = 64, seed: int = 0, overwrite: bool = False) -> Path:
    from safetensors.torch import save_file

    from .images import grid, save_png, to_uint8
    from .run import load_run
    from .training.monitor import MetricsLog
    run, out = Path(run), Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise GankitError(f"export: {out} exists and is not empty (choose another folder or pass --overwrite)")
    family, record = load_run(run)
    weights = "ema" if family.ema is not None else "G"
    generator = family.average() if family.ema is not None else family.nets["G"]
    tensors = {f"generator.{k}": v.detach().contiguous().cpu() for k, v in generator.state_dict().items()}
    if family.has_encoder:
        tensors.update({f"encoder.{k}": v.detach().contiguous().cpu() for k, v in family.nets["E"].state_dict().items()})
    run_info = json.loads((run / "run.json").read_text()) if (run / "run.json").exists() else {}
    metrics = [r for r in MetricsLog(run / "metrics.jsonl").read() if "metric" in r and "value" in r] \
        if (run / "metrics.jsonl").exists() else []
    config = {"format": FORMAT, "gankit_version": __version__, "family": family.name, "step": record["step"],
              "weights": weights, "config": family.cfg.to_dict(), "run": run.name,
              "data": run_info.get("data"), "metrics": metrics[-8:]}
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": FORMAT})
    (out / "config.json").write_text(json.dumps(config, indent=2))
    z = family.sample_z(n, torch.Generator().manual_seed(seed))
    save_png(grid(to_uint8(family.generate(z))), out / "samples.png")
    (out / "README.md").write_text(model_card(config))
    return out


def model_card(config: dict) -> str:
    cfg, metrics = config["config"], config["metrics"]
    lines = [f"---\nlibrary_name: gankit\ntags:\n- gan\n- image-generation\n- {config['family']}\n---\n",
             f"# {cfg['preset']} ({config['family']}), step {config['step']:,}\n",
             f"A {cfg['model']['res']}-px image generator trained with gankit "
             f"{config['gankit_version']}: preset `{cfg['preset']}` on `{config['data']}`, "
             f"{config['step']:,} steps at batch {cfg['train']['batch']}. The weights are "
             + ("the exponential moving average of G (decay " f"{cfg['train']['ema']:g})." if config["weights"] == "ema"
                else "those of G.") + "\n",
             "![samples](samples.png)\n", "## Metrics on record\n"]
    if metrics:
        lines += ["| step | metric | value |", "|---|---|---|"]
        lines += [f"| {m.get('step', '')} | {m['metric']} | {m['value']:.4g} |" for m in metrics]
    else:
        lines.append("None were computed for this run (`gankit eval RUN --metric ...` adds them).")
    lines += ["\n## Use\n", "```python\nimport gankit\nmodel = gankit.load(\"THIS_FOLDER\")\n"
              "images = model.sample(16, seed=0)  # uint8 (16, H, W, 3)\n```\n",
              "## How it was trained\n", "```json\n" + json.dumps(cfg, indent=1) + "\n```\n",
              f"Exported on {platform.node() or 'a machine'} with torch {torch.__version__}.\n"]
    return "\n".join(lines)


def load_exported(path: str | Path, device: str = "cpu"):
    """A `gankit.api.Model` from an exported folder."""
    from safetensors.torch import load_file

    from .api import Model
    from .config import Config
    from .env import resolve_precision
    from .families import build_family
    path = Path(path)
    config = json.loads((path / "config.json").read_text())
    cfg = Config.from_dict(config["config"])
    cfg.train.ema, cfg.train.compile = 0.0, False  # the exported weights are the ones to sample with
    family = build_family(cfg, torch.device(device), resolve_precision(device, "auto", auto="fp32"))
    tensors = load_file(str(path / "model.safetensors"), device=device)
    parts = {"generator": family.nets["G"], **({"encoder": family.nets["E"]} if family.has_encoder else {})}
    for prefix, net in parts.items():
        state = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
        if not state:
            raise GankitError(f"{path}/model.safetensors: no {prefix}.* weights")
        net.load_state_dict(state)
    for net in family.nets.values():
        net.eval()
    return Model(family, {"source": str(path), "step": config["step"], "weights": config["weights"]})


def hub_generator_class():
    """A huggingface_hub ModelHubMixin class for exported folders (needs `pip install huggingface_hub`):
    `hub_generator_class().from_pretrained(FOLDER_OR_REPO)` builds the generator from config.json and
    loads `generator.*` from model.safetensors; calling it maps codes to images in [-1, 1]."""
    from huggingface_hub import PyTorchModelHubMixin
    from torch import nn

    from .config import Config
    from .families import REGISTRY, build_family

    class GankitGenerator(nn.Module, PyTorchModelHubMixin, library_name="gankit"):
        def __init__(self, config: dict):
            super().__init__()
            cfg = Config.from_dict(config)
            cfg.train.ema, cfg.train.compile = 0.0, False
            assert cfg.model.family in REGISTRY
            self.generator = build_family(cfg, torch.device("cpu"), None).nets["G"]

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return self.generator(z)

    return GankitGenerator

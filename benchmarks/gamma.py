"""BEGAN's gamma: lower gamma, more realism and less variety (seed 001)? Measured with precision
(realism) and recall / coverage (variety) on held-out CelebA faces.

    python benchmarks/gamma.py --celeba data/celeba64 [--gammas 0.3,0.5,0.7] [--runs runs/gamma]
                               [--reuse 0.5=runs/gallery/celeba-began] [--out docs/figures] [-n 10000]

Each gamma trains the `began-64-cpu` preset unchanged but for gan.gamma, on DATA[:9000], for the
preset's budget; a run already finished is reused (and `--reuse G=FOLDER` takes an existing run for
gamma G, e.g. the gallery's BEGAN) if it trained with the preset's gamma and lambda_k, and is sampled
as the preset samples (its average where it keeps one, else G itself). Then n samples of each are scored against DATA[9000:] in gankit's
CelebA feature space (FD, precision/recall k=3, density/coverage k=5, from one pass), and a figure
puts the sample grids side by side. Recall stays at 0 while every gamma is far from the data, so the
variety is also measured without the reference's manifold: `spread` is the mean pairwise distance
between 2,000 samples' features over the same for 2,000 real held-out faces (1 = as varied as the
data). Prints the table as Markdown and writes it beside the figure.
"""
import argparse
import json
from pathlib import Path

import torch

from gankit.config import apply_overrides, load_preset
from gankit.gallery import Job, drift
from gankit.metrics.registry import (KINDS, MetricSpec, evaluate_many, features_of, generator_batches,
                                     load_features, reference_features)
from gankit.run import load_run
from gankit.sample import sample_grid
from gankit.training import Trainer
from gankit.training.checkpoint import list_checkpoints


def run_for(gamma: float, data: str, runs: Path, reuse: dict) -> Path:
    if gamma in reuse:
        found = sorted(Path(reuse[gamma]).glob("[0-9]*-*")) or [Path(reuse[gamma])]
        return found[-1]
    root = runs / f"gamma-{gamma:g}"
    found = sorted(root.glob("[0-9]*-*"))
    if found and (found[-1] / "gamma-done.json").exists():
        return found[-1]
    if found and list_checkpoints(found[-1] / "checkpoints"):
        trainer = Trainer.resume(found[-1], [], progress=False)
    else:
        cfg = apply_overrides(load_preset("began-64-cpu"), [f"gan.gamma={gamma}"])
        trainer = Trainer.new(cfg, data, runs_root=root, progress=False)
    trainer.run()
    (trainer.run_dir / "gamma-done.json").write_text(json.dumps({"step": trainer.step}))
    return trainer.run_dir


def mean_pairwise(f) -> float:
    f = torch.as_tensor(f, dtype=torch.float64)
    return float(torch.cdist(f, f).sum() / (len(f) * (len(f) - 1)))


def spread(family, space, real_spread: float, gen: torch.Generator, n: int = 2000) -> float:
    """Mean pairwise feature distance of n samples over `real_spread`, the same for 2,000 real faces
    (1 = the data's variety)."""
    fake = features_of(generator_batches(lambda m: family.generate(family.sample_z(m, gen)), n), space)
    return mean_pairwise(fake) / real_spread


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--celeba", required=True, help="prepared CelebA-64 folder")
    ap.add_argument("--gammas", default="0.3,0.5,0.7")
    ap.add_argument("--runs", default="runs/gamma")
    ap.add_argument("--reuse", action="append", default=[], metavar="GAMMA=FOLDER")
    ap.add_argument("--out", default="docs/figures")
    ap.add_argument("-n", type=int, default=10_000, help="generated images scored per gamma")
    args = ap.parse_args()
    gammas = [float(g) for g in args.gammas.split(",")]
    reuse = {float(k): v for k, v in (r.split("=", 1) for r in args.reuse)}
    train, ref = f"{args.celeba}[:9000]", f"{args.celeba}[9000:]"
    rows, runs, use_ema = [], [], []
    space = load_features("celeba-attr", ref=ref)
    real_spread = mean_pairwise(reference_features(ref, space, 2000))
    for gamma in gammas:
        run = run_for(gamma, train, Path(args.runs), reuse)
        family, record = load_run(run)
        job = Job("celeba", f"gamma {gamma:g}", "began-64-cpu", train, ref, [f"gan.gamma={gamma}"])
        want = job.config
        changed = drift(job, run)  # a run of an older preset is another experiment
        if changed:
            raise SystemExit(f"{run}: trained with {', '.join(changed)}, which the preset no longer gives; "
                             f"move it away or --reuse another run")
        family.use_ema = want.train.ema > 0  # as the preset samples (G itself where it keeps no average)
        use_ema.append(family.use_ema)
        gen = torch.Generator().manual_seed(0)
        specs = [MetricSpec(f"{m}-celeba-attr", KINDS[m], "celeba-attr", args.n) for m in ("fd", "pr", "dc")]
        fd, pr, dc = evaluate_many(specs, lambda n: family.generate(family.sample_z(n, gen)), ref)
        rows.append({"gamma": gamma, "run": str(run), "step": record["step"], "fd": fd["value"], **pr, **dc,
                     "spread": spread(family, space, real_spread, gen)})
        runs.append(run)
    out = Path(args.out)
    figure = sample_grid(runs, 36, out / "gamma-began.png", labels=[f"gamma {g:g}" for g in gammas], ema=use_ema)
    table = ["| gamma | steps | fd-celeba-attr | precision | recall | density | coverage | spread |",
             "|---|---|---|---|---|---|---|---|"]
    table += [f"| {r['gamma']:g} | {r['step']:,} | {r['fd']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} | "
              f"{r['density']:.3f} | {r['coverage']:.3f} | {r['spread']:.3f} |" for r in rows]
    (out / "gamma-began.md").write_text("\n".join(table) + "\n")
    (out / "gamma-began.json").write_text(json.dumps(rows, indent=1))
    print("\n".join(table))
    print(f"figure: {figure}")


if __name__ == "__main__":
    main()

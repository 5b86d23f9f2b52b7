"""Does a GAN's own convergence measure follow sample quality? (seed 000: WGAN's critic estimate and
BEGAN's M_global "correlate well with generated sample quality").

    python benchmarks/convergence.py RUN [RUN ...] [--out docs/figures]

Each run must have trained with an in-training metric (train.metric, e.g. fd-celeba-attr2k on held-out
faces; the gallery's WGAN-GP and BEGAN runs log one). For every evaluation step the measure is averaged
over the log records since the previous evaluation, and compared with the metric of G itself
(METRIC_raw when EMA was on: the measure watches G, not its average). Writes one figure per run (both
curves over the steps) and prints the Spearman rank correlation with its p-value, as JSON.
The measure: `wasserstein` (the critic's estimate of W(P_r, P_g), D(real) - D(fake); larger = farther)
for WGAN, `M_global` for BEGAN (larger = farther from convergence). Quality: FD, lower = better; so a
measure that tracks quality correlates positively. Two curves that both fall with training correlate
whether or not one follows the other, so the rank correlation of their changes between consecutive
evaluations is printed too (`changes_rho`): does the measure fall more where quality improves more?
"""
import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from gankit.images import pyplot, save_figure

MEASURES = {"wgan": "wasserstein", "began": "M_global"}


def series(run: Path) -> dict:
    cfg = json.loads((run / "config.json").read_text())
    family, metric = cfg["model"]["family"], cfg["train"]["metric"]
    if family not in MEASURES or not metric:
        raise SystemExit(f"{run}: needs a WGAN or BEGAN run trained with train.metric")
    measure = MEASURES[family]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    quality_key = metric + "_raw" if any(metric + "_raw" in r for r in records) else metric
    evals = sorted({r["step"]: r[quality_key] for r in records if quality_key in r}.items())
    logged = sorted({r["step"]: r[measure] for r in records if measure in r}.items())
    steps, quality, mean_measure, prev = [], [], [], 0
    for step, q in evals:
        window = [v for s, v in logged if prev < s <= step]
        prev = step
        if window:
            steps.append(step)
            quality.append(q)
            mean_measure.append(float(np.mean(window)))
    rho, p = spearmanr(mean_measure, quality) if len(steps) > 2 else (float("nan"), float("nan"))
    d_rho, d_p = (spearmanr(np.diff(mean_measure), np.diff(quality)) if len(steps) > 3
                  else (float("nan"), float("nan")))
    return {"run": run.name, "family": family, "measure": measure, "metric": quality_key, "steps": steps,
            "measure_means": mean_measure, "quality": quality, "spearman_rho": float(rho), "p_value": float(p),
            "changes_rho": float(d_rho), "changes_p": float(d_p),
            "evaluations": len(steps), "log_steps": [s for s, _ in logged], "log_values": [v for _, v in logged]}


def figure(s: dict, out: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(s["log_steps"], s["log_values"], color="tab:blue", alpha=0.25, linewidth=0.8)
    ax.plot(s["steps"], s["measure_means"], "o-", color="tab:blue", label=f"{s['measure']} (mean since last eval)")
    ax.set_xlabel("step")
    ax.set_ylabel(s["measure"], color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(s["steps"], s["quality"], "s-", color="tab:red", label=s["metric"])
    ax2.set_ylabel(f"{s['metric']} (lower = better)", color="tab:red")
    ax.set_title(f"{s['run']}: Spearman rho {s['spearman_rho']:+.2f} (p {s['p_value']:.2g}, "
                 f"{s['evaluations']} evaluations); of the changes {s['changes_rho']:+.2f} (p {s['changes_p']:.2g})",
                 fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", default="docs/figures")
    args = ap.parse_args()
    for run in map(Path, args.runs):
        s = series(run)
        path = figure(s, Path(args.out) / f"convergence-{s['family']}-{run.name}.png")
        print(json.dumps({k: s[k] for k in ("run", "measure", "metric", "evaluations", "spearman_rho", "p_value",
                                                         "changes_rho", "changes_p")}
                         | {"figure": str(path)}))


if __name__ == "__main__":
    main()

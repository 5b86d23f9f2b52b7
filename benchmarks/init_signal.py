"""How much of the input reaches the output at initialisation, for each `model.init`.

    python benchmarks/init_signal.py [--preset began-64-cpu] [--batch 64]

For BEGAN, prints the spread across a batch (the standard deviation over the batch, averaged over
units) of D's code h for random images, of D's reconstruction, and of G's output for z ~ U[-1, 1]^Z: near
zero means the network gives nearly the same answer whatever its input, so training starts from nothing
to go on. Other families: G's output only.
"""
from __future__ import annotations

import argparse

import torch

from gankit.config import apply_overrides, load_preset
from gankit.families import build_family


def spread(t: torch.Tensor) -> float:
    return float(t.float().flatten(1).std(0).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="began-64-cpu")
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    print(f"{args.preset}, batch {args.batch}: spread across the batch at init")
    for init in ("normal", "default", "xavier", "kaiming"):
        cfg = apply_overrides(load_preset(args.preset), [f"model.init={init}", "train.channels_last=false"])
        torch.manual_seed(0)
        fam = build_family(cfg, torch.device("cpu"), None)
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            row = {"G(z)": spread(fam.nets["G"](fam.sample_z(args.batch, gen)))}
            D = fam.nets["D"]
            if hasattr(D, "encoder"):  # BEGAN's autoencoder D
                x = torch.rand(args.batch, 3, cfg.model.res, cfg.model.res, generator=gen) * 2 - 1
                row["D's h"] = spread(D.encoder(x))
                row["D(x)"] = spread(D(x))
        print(f"  {init:8s}" + "".join(f"  {k} {v:.4g}" for k, v in row.items()))


if __name__ == "__main__":
    main()

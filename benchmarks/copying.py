"""Does a generator copy its training images? Nearest neighbours in a feature space.

    python benchmarks/copying.py --data data/flowers64 RUN [RUN ...] [-n 2000]

For n samples of each run, the distance to the nearest training image in the data's feature space
(gankit's network in DATA/features), against the distance from each real image to its nearest other
real image. A generator that copies puts many samples closer to a training image than real images
are to each other; prints, per run, the median sample-to-real distance and the share of samples
closer than the real-to-real median, as JSON.
"""
import argparse
import json
from pathlib import Path

import torch

from gankit.data.dataset import split_rows
from gankit.metrics.registry import feature_net_at, features_of, generator_batches, reference_features
from gankit.run import load_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--data", required=True, help="the training images (a prepared folder with features/)")
    ap.add_argument("-n", type=int, default=2000)
    args = ap.parse_args()
    space = feature_net_at(Path(split_rows(args.data)[0]) / "features")
    real = torch.as_tensor(reference_features(args.data, space, 10**9), dtype=torch.float64)
    d = torch.cdist(real, real)
    d.fill_diagonal_(float("inf"))
    real_median = float(d.min(1).values.median())
    print(json.dumps({"data": args.data, "features": space.id, "real_to_real_median": round(real_median, 4)}))
    for run in args.runs:
        family, record = load_run(run)
        gen = torch.Generator().manual_seed(0)
        fake = features_of(generator_batches(lambda m: family.generate(family.sample_z(m, gen)), args.n), space)
        nearest = torch.cdist(torch.as_tensor(fake, dtype=torch.float64), real).min(1).values
        print(json.dumps({"run": str(run), "step": record["step"], "median": round(float(nearest.median()), 4),
                          "closer_than_real_median": round(float((nearest < real_median).double().mean()), 4)}))


if __name__ == "__main__":
    main()

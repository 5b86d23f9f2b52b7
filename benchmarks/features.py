"""Feature extraction speed (FID Inception) and the bf16 error of FID / FD.

    python benchmarks/features.py [--kit ../shared/fid-check] [--celeba data/celeba64] [--flowers data/flowers64]

Speed: images/s of the FID Inception network on 64-px uint8 images (resized to 299 inside), for a
plain fp32 NCHW loop at pytorch-fid's default batch of 50 and for gankit's extractor (channels-last,
inference mode; fp32 and bf16). The weights do not change the speed, so the kit's recipe weights
are used. bf16 error: the kit's features and FID, and distances on real sets, bf16 against fp32.
"""
import argparse
import json
import time
import warnings

import numpy as np
import torch

from gankit.metrics.extract import extract_features, image_batches
from gankit.metrics.fidcheck import check_kit
from gankit.metrics.inception import FIDInceptionV3
from gankit.metrics.registry import Features, compare_sets, load_features


@torch.no_grad()
def plain_loop(net, images, batch=50):
    net = net.to(memory_format=torch.contiguous_format)
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(images[i:i + batch]).permute(0, 3, 1, 2).float().div(255).contiguous()
        out.append(net(x).numpy())
    return np.concatenate(out)


def rate(fn, n):
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kit", default="../shared/fid-check")
    ap.add_argument("--celeba", help="prepared CelebA-64 for real-set errors")
    ap.add_argument("--flowers", help="prepared flowers-64")
    ap.add_argument("--n", type=int, default=200, help="images for the speed test")
    ap.add_argument("--real-n", type=int, default=500, help="images a side for the real-set errors")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    res = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    net = FIDInceptionV3().eval()
    images = np.load(f"{args.kit}/images.npz")["images"]
    images = np.concatenate([images] * (args.n // len(images) + 1))[:args.n]
    extract_features(net, image_batches(images[:16], 16))  # warm-up
    res["inception_img_per_s"] = {
        "plain fp32 NCHW, batch 50": rate(lambda: plain_loop(net, images), len(images)),
        "gankit fp32 channels-last, batch 50": rate(lambda: extract_features(net, image_batches(images, 50)), len(images)),
        "gankit bf16 channels-last, batch 50": rate(lambda: extract_features(net, image_batches(images, 50), bf16=True), len(images)),
    }
    r32, r16 = check_kit(args.kit), check_kit(args.kit, bf16=True)
    res["kit"] = {"fp32": r32, "bf16": r16}
    if args.celeba:
        from gankit.metrics.fidcheck import recipe_state_dict
        spec = json.load(open(f"{args.kit}/keys.json"))
        net.load_state_dict(recipe_state_dict(spec["keys"], spec["seed"]))
        inc = Features(net, "inception-recipe", "inception")
        own = load_features("celeba-attr", features=f"{args.celeba}/features")
        real = {}
        k = args.real_n
        pairs = [("celeba halves", f"{args.celeba}[:{k}]", f"{args.celeba}[5000:{5000 + k}]")]
        if args.flowers:
            pairs.append(("celeba vs flowers", f"{args.celeba}[:{k}]", f"{args.flowers}[:{k}]"))
        for label, a, b in pairs:
            for fname, f in (("inception (recipe weights)", inc), ("celeba-attr", own)):
                v32 = compare_sets(a, b, f)["value"]
                v16 = compare_sets(a, b, f, bf16=True)["value"]
                real[f"{label}, {fname}"] = {"fp32": v32, "bf16": v16, "rel_diff": abs(v16 - v32) / abs(v32)}
        res["real_sets"] = real
    print(json.dumps(res, indent=1, default=float))


if __name__ == "__main__":
    main()

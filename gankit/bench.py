"""Training throughput of gankit's default path against plain PyTorch loops, in one run.

    python -m gankit.bench [--preset dcgan-64] [--steps 3] [--jpegs DIR]
    python -m gankit.bench --throughput dcgan-64-cpu,began-64-cpu,vae-64-cpu   # any family, gankit's path only
    python -m gankit.bench --throughput wgan-gp-64-cpu --set train.batch=32    # ... with config overrides

Three loops train the same networks (MISSION conv3 tables, batch 128) on the same machine, the
DCGAN-64 preset or WGAN-GP-64 (LayerNorm critic, 5 critic steps with the gradient penalty):
  gankit      the trainer's path: prepared uint8 array, bf16 autocast where native, channels_last,
              fused Adam, no D weight gradients in the G update (and torch.compile if --compile)
  plain       a plain fp32 eager loop written here (NCHW, default Adam) on pre-decoded tensors
  plain+jpeg  the same loop decoding and resizing JPEGs each batch, as reference implementations
              built on an image-folder loader do
Images/s is the median over timed steps after warm-up steps.
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from .config import apply_overrides, load_preset
from .data.dataset import to_float
from .data.prepare import list_images, load_image
from .data.toyfaces import draw_face
from .families import build_family
from .env import cpu_name
from .run import resolve_device
from .training.speed import peak_flops, step_flops
from .env import resolve_precision


# --- the plain loop's networks, written out as a newcomer would ------------------------------------
def plain_generator(z_dim=100, w=128):
    return nn.Sequential(
        nn.Linear(z_dim, 8 * w * 4 * 4, bias=False), nn.Unflatten(1, (8 * w, 4, 4)), nn.BatchNorm2d(8 * w), nn.ReLU(),
        nn.ConvTranspose2d(8 * w, 4 * w, 3, 2, 1, 1, bias=False), nn.BatchNorm2d(4 * w), nn.ReLU(),
        nn.ConvTranspose2d(4 * w, 2 * w, 3, 2, 1, 1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(),
        nn.ConvTranspose2d(2 * w, w, 3, 2, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
        nn.ConvTranspose2d(w, 3, 3, 2, 1, 1), nn.Tanh())


def plain_discriminator(w=128, norm="batch"):
    nl = (lambda c: nn.BatchNorm2d(c)) if norm == "batch" else (lambda c: nn.GroupNorm(1, c))  # LayerNorm critic
    return nn.Sequential(
        nn.Conv2d(3, w, 3, 2, 1), nn.LeakyReLU(0.2),  # no norm on the input layer (DCGAN paper)
        nn.Conv2d(w, 2 * w, 3, 2, 1, bias=False), nl(2 * w), nn.LeakyReLU(0.2),
        nn.Conv2d(2 * w, 4 * w, 3, 2, 1, bias=False), nl(4 * w), nn.LeakyReLU(0.2),
        nn.Conv2d(4 * w, 8 * w, 3, 2, 1, bias=False), nl(8 * w), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(8 * w * 16, 1))


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def time_steps(step, warmup: int, steps: int) -> list[float]:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times


def bench_plain(images_u8: np.ndarray | None, jpegs: list[str] | None, batch: int, z_dim: int, width: int,
                warmup: int, steps: int, wgan_gp: bool = False) -> list[float]:
    torch.manual_seed(0)
    G, D = plain_generator(z_dim, width), plain_discriminator(width, "layer" if wgan_gp else "batch")
    betas = (0.0, 0.9) if wgan_gp else (0.5, 0.999)
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-4 if wgan_gp else 2e-4, betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-4 if wgan_gp else 2e-4, betas=betas)
    bce = nn.BCEWithLogitsLoss()
    rng = np.random.default_rng(0)

    def next_batch():
        if jpegs is not None:  # decode, crop, resize and normalise every image of the batch
            idx = rng.integers(0, len(jpegs), batch)
            arr = np.stack([load_image(jpegs[i], 64, None) for i in idx])
        else:
            arr = images_u8[rng.integers(0, len(images_u8), batch)]
        return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(127.5).sub(1).contiguous()

    def step_wgan_gp():  # 5 critic updates with the gradient penalty, then one generator update
        for _ in range(5):
            real = next_batch()
            with torch.no_grad():
                fake = G(torch.randn(batch, z_dim))
            eps = torch.rand(batch, 1, 1, 1)
            x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
            (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
            gp = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
            loss_d = D(fake).mean() - D(real).mean() + 10 * gp
            opt_d.zero_grad(); loss_d.backward(); opt_d.step()
        loss_g = -D(G(torch.randn(batch, z_dim))).mean()
        opt_g.zero_grad(); loss_g.backward(); opt_g.step()

    def step():
        real = next_batch()
        fake = G(torch.randn(batch, z_dim))
        loss_d = bce(D(real), torch.ones(batch, 1)) + bce(D(fake.detach()), torch.zeros(batch, 1))
        opt_d.zero_grad(); loss_d.backward(); opt_d.step()
        loss_g = bce(D(fake), torch.ones(batch, 1))
        opt_g.zero_grad(); loss_g.backward(); opt_g.step()

    return time_steps(step_wgan_gp if wgan_gp else step, warmup, steps)


def bench_gankit(preset: str, images_u8: np.ndarray, warmup: int, steps: int, compile: bool,
                 overrides: list[str] | None = None, device: str = "cpu"):
    cfg = apply_overrides(load_preset(preset), overrides or [])
    cfg.train.compile = compile or cfg.train.compile  # --compile, or --set train.compile=true
    device = torch.device(device)
    precision = resolve_precision(device, cfg.train.precision)
    torch.manual_seed(0)
    family = build_family(cfg, device, precision)
    gen, noise = torch.Generator().manual_seed(0), torch.Generator(device).manual_seed(1)
    u8 = torch.from_numpy(images_u8)
    per_step = cfg.train.batch * family.batches_per_step

    def step():
        idx = torch.randint(0, len(u8), (per_step,), generator=gen)
        family.step(to_float(u8[idx], device, cfg.train.channels_last), noise)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    times = time_steps(step, warmup, steps)
    return times, family, precision, cfg


def throughput(presets: list[str], warmup: int, steps: int, overrides: list[str] | None = None,
               device: str = "cpu") -> dict:
    """gankit's training images/s and MFU for each preset (any family) with `overrides` applied, on
    toyfaces at the preset's size."""
    out = {}
    print(f"{'preset':22s} {'batch':>5s} {'img/s':>8s} {'s/step':>8s} {'MFU':>6s}")
    for name in presets:
        res = apply_overrides(load_preset(name), overrides or []).model.res
        images = np.stack([draw_face(i, res)[0] for i in range(256)])
        times, family, precision, cfg = bench_gankit(name, images, warmup, steps, False, overrides, device)
        t = statistics.median(times)
        per_step = cfg.train.batch * family.batches_per_step
        flops = step_flops(family, cfg.train.batch, res)
        peak, _ = peak_flops(torch.device(device), precision or torch.float32)
        out[name] = {"batch": per_step, "images_per_s": round(per_step / t, 2), "s_per_step": round(t, 3),
                     "mfu": round(flops / t / peak, 3)}
        print(f"{name:22s} {per_step:5d} {per_step / t:8.1f} {t:8.3f} {100 * flops / t / peak:5.1f}%")
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="dcgan-64", help="a conv3 DCGAN preset at 64 px (default dcgan-64)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per loop")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--jpegs", help="folder of JPEGs for plain+jpeg (default: toyfaces written as JPEGs)")
    ap.add_argument("--compile", action="store_true", help="also torch.compile gankit's networks")
    ap.add_argument("--skip-jpeg", action="store_true", help="leave out the plain+jpeg loop")
    ap.add_argument("--json", help="write the results here as JSON")
    ap.add_argument("--throughput", metavar="PRESETS",
                    help="instead: gankit's images/s and MFU for these comma-separated presets (any family)")
    ap.add_argument("--device", default="cpu", help="with --throughput: cpu, cuda, cuda:N or auto (the plain-loop "
                    "comparison is a CPU benchmark)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="with --throughput: a config override applied to every preset (repeatable)")
    args = ap.parse_args(argv)
    if args.throughput:
        res = throughput(args.throughput.split(","), args.warmup, args.steps, args.set, str(resolve_device(args.device)))
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2))
        return res

    cfg = load_preset(args.preset)
    wgan_gp = cfg.model.family == "wgan" and cfg.gan.gp_lambda > 0 and cfg.model.d_norm == "layer"
    if cfg.model.family not in ("dcgan", "wgan") or (cfg.model.family == "wgan" and not wgan_gp) \
            or cfg.model.arch != "conv3" or cfg.model.res != 64:
        raise SystemExit("gankit.bench: the plain loops implement the conv3 DCGAN and WGAN-GP (LayerNorm) at 64 px")
    per_step = cfg.train.batch * (cfg.gan.n_critic if wgan_gp else 1)  # real images a step consumes
    batch, z_dim, width = cfg.train.batch, cfg.model.z_dim, cfg.model.width
    images = np.stack([draw_face(i, 64)[0] for i in range(512)])

    results: dict = {"date": datetime.date.today().isoformat(), "preset": args.preset, "batch": batch,
                     "machine": f"{cpu_name()}, {torch.get_num_threads()} threads", "torch": torch.__version__}

    g_times, family, precision, cfg = bench_gankit(args.preset, images, args.warmup, args.steps, args.compile)
    assert n_params(family.nets["G"]) == n_params(plain_generator(z_dim, width)), "G differs from the plain loop's"
    assert n_params(family.nets["D"]) == n_params(plain_discriminator(width, "layer" if wgan_gp else "batch")), \
        "D differs from the plain loop's"
    flops = step_flops(family, batch, 64)
    peak, _ = peak_flops(torch.device("cpu"), precision or torch.float32)
    rows = {"gankit": g_times}
    rows["plain"] = bench_plain(images, None, batch, z_dim, width, args.warmup, args.steps, wgan_gp)
    if not args.skip_jpeg:
        if args.jpegs:
            jpegs = list_images(Path(args.jpegs))
        else:
            tmp = Path(tempfile.mkdtemp(prefix="gankit-bench-"))
            for i in range(256):
                Image.fromarray(images[i]).save(tmp / f"{i}.jpg", quality=90)
            jpegs = list_images(tmp)
        rows["plain+jpeg"] = bench_plain(None, jpegs, batch, z_dim, width, args.warmup, args.steps, wgan_gp)

    base = per_step / statistics.median(rows["plain"])
    print(f"{args.preset}, batch {batch}, {results['machine']}, torch {torch.__version__}, "
          f"gankit precision {'bf16' if precision else 'fp32'}{' + compile' if args.compile else ''}")
    print(f"{'loop':12s} {'img/s':>8s} {'s/step':>8s} {'vs plain':>9s} {'MFU':>6s}")
    for name, times in rows.items():
        t = statistics.median(times)
        ips = per_step / t
        mfu = flops / t / peak if name == "gankit" else flops / t / peak_flops(torch.device("cpu"), torch.float32)[0]
        results[name] = {"images_per_s": round(ips, 2), "s_per_step": round(t, 3), "speedup": round(ips / base, 2),
                         "mfu": round(mfu, 3), "times": [round(x, 3) for x in times]}
        print(f"{name:12s} {ips:8.1f} {t:8.3f} {ips / base:8.2f}x {100 * mfu:5.1f}%")
    results["step_gflop"] = round(flops / 1e9, 1)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()

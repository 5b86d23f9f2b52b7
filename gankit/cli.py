"""`gankit` command line: each subcommand parses its options and calls the API, nothing more."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import GankitError


def cmd_prepare(args) -> None:
    from .data import prepare
    if args.source != "toyfaces" and not args.paths:
        raise GankitError(f"prepare {args.source}: give the source PATH")
    meta = prepare(args.source, args.paths, args.res, args.out, limit=args.limit, workers=args.workers,
                   overwrite=args.overwrite, images=args.images, count=args.count)
    skipped = meta["skipped_count"]
    print(f"prepared {meta['count']} images of {args.source} at {args.res} px into {args.out} "
          f"in {meta['seconds']:.1f} s; skipped {skipped}")
    for s in meta["skipped"][:10]:
        print(f"  skipped {s['file']}: {s['error']}")
    if skipped > 10:
        print(f"  ... and {skipped - 10} more (listed in {Path(args.out) / 'meta.json'})")


def cmd_train(args) -> None:
    from .config import apply_overrides, load_preset
    from .train import Trainer
    if args.resume:
        if args.preset:
            raise GankitError("--resume takes the preset from the run folder; drop --preset")
        trainer = Trainer.resume(args.resume, args.set, data=args.data, progress=not args.quiet)
        print(f"resuming {trainer.run_dir} at step {trainer.step}")
    else:
        if not args.preset:
            raise GankitError("train: --preset is required (see `gankit presets`)")
        if not args.data:
            raise GankitError("train: --data is required (a `gankit prepare` folder, or `toyfaces`)")
        cfg = apply_overrides(load_preset(args.preset), args.set)
        trainer = Trainer.new(cfg, args.data, runs_root=args.runs, progress=not args.quiet)
        print(f"run folder: {trainer.run_dir} ({trainer.describe()['device']}, "
              f"{trainer.describe()['precision']}, {len(trainer.dataset)} images)")
    last = trainer.run()
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in last.items()}))
    print(f"samples: {trainer.run_dir / 'samples' / 'latest.png'}  plots: {trainer.run_dir / 'plots'}")


def cmd_sample(args) -> None:
    from .sample import sample_grid
    path = sample_grid(args.run, args.n, args.out, seed=args.seed)
    print(f"wrote {path}")


def cmd_presets(args) -> None:
    from .config import load_preset, preset_description, preset_names
    for name in preset_names():
        cfg = load_preset(name)
        m, o, g, t = cfg.model, cfg.optim, cfg.gan, cfg.train
        extra = (f" n_critic={g.n_critic}" if g.n_critic > 1 else "") + (f" clip={g.clip}" if g.clip else "") \
            + (f" gp_lambda={g.gp_lambda}" if g.gp_lambda else "")
        aug = "+".join(k for k in ("flip", "rot90", "hsv") if getattr(cfg.augment, k)) or "none"
        print(f"{name:22s} {m.family}/{m.arch} {m.res}px Z={m.z_dim} width={m.width} D-norm={m.d_norm} "
              f"batch={t.batch} {o.name} lr={o.lr_g:g}/{o.lr_d:g} betas=({o.beta1:g},{o.beta2:g}){extra} aug={aug}")
        if args.verbose:
            print(f"{'':22s} {preset_description(name)}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gankit", description="Train, evaluate and explore image generators.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("prepare", help="convert an image source once into a prepared uint8 array")
    s.add_argument("source", choices=["celeba", "flowers", "cifar10", "folder", "toyfaces"])
    s.add_argument("paths", nargs="*", help="source folder(s) or file (flowers takes 17 and 102 together)")
    s.add_argument("--res", type=int, default=64, help="output resolution: 32, 64 or 128 (default 64)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--limit", type=int, help="only the first N images")
    s.add_argument("--workers", type=int, help="decoding processes (default: all cores)")
    s.add_argument("--images", help="celeba: image subfolder (default: the img_align_celeba* with most JPEGs)")
    s.add_argument("--count", type=int, default=10_000, help="toyfaces: how many faces to draw")
    s.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    s.set_defaults(func=cmd_prepare)

    s = sub.add_parser("train", help="train a preset on a prepared dataset (or resume a run)")
    s.add_argument("--preset", help="preset name (`gankit presets`)")
    s.add_argument("--data", help="prepared dataset folder, or `toyfaces` (built in)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.steps=2000 --set lr_d=1e-4")
    s.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its newest intact checkpoint")
    s.add_argument("--runs", default="runs", help="folder for new run folders (default ./runs)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="sample a grid from a run's newest checkpoint")
    s.add_argument("run", help="run folder")
    s.add_argument("-n", type=int, default=64, help="number of images (default 64)")
    s.add_argument("--out", required=True, help="output PNG")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_sample)

    s = sub.add_parser("presets", help="list presets with their hyper-parameters")
    s.add_argument("-v", "--verbose", action="store_true", help="also print each preset's description")
    s.set_defaults(func=cmd_presets)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except GankitError as e:
        print(f"gankit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gankit: interrupted", file=sys.stderr)
        return 130
    return 0

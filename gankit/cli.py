"""`gankit` command line: each subcommand parses its options and calls the API, nothing more."""
from __future__ import annotations

import argparse
import json
import logging
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
    if skipped:
        print("  skipped by reason: " + ", ".join(f"{k} {v}" for k, v in meta.get("skipped_by_reason", {}).items()))
    for s in meta["skipped"][:10]:
        print(f"  skipped {s['file']}: {s['error']}")
    if skipped > 10:
        print(f"  ... and {skipped - 10} more (listed in {Path(args.out) / 'meta.json'})")


def cmd_train(args) -> None:
    from .config import apply_overrides, load_preset
    from .training import Trainer
    from .training import distributed as ddp
    world = ddp.init_from_env()  # torchrun: one process per device; else a single process
    say = print if world.main else (lambda *a, **k: None)
    try:
        if args.resume:
            if args.preset:
                raise GankitError("--resume takes the preset from the run folder; drop --preset")
            trainer = Trainer.resume(args.resume, args.set, data=args.data, progress=not args.quiet, world=world)
            say(f"resuming {trainer.run_dir} at step {trainer.step}" +
                (f" with {world.size} processes" if world.active else ""))
        else:
            if not args.preset:
                raise GankitError("train: --preset is required (see `gankit presets`)")
            if not args.data:
                raise GankitError("train: --data is required (a `gankit prepare` folder, or `toyfaces`)")
            cfg = apply_overrides(load_preset(args.preset), args.set)
            trainer = Trainer.new(cfg, args.data, runs_root=args.runs, progress=not args.quiet, world=world)
            info = trainer.describe()
            say(f"run folder: {trainer.run_dir} ({info['device']}, {info['precision']}, {len(trainer.dataset)} images"
                + (f", {world.size} processes" if world.active else "") + ")")
        last = trainer.run()
        say(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in last.items()}))
        say(f"samples: {trainer.run_dir / 'samples' / 'latest.png'}  plots: {trainer.run_dir / 'plots'}")
        if world.active:
            ddp.leave()  # exits the process
    finally:
        ddp.shutdown()


def cmd_sample(args) -> None:
    from .sample import sample_grid
    path = sample_grid(args.run, args.n, args.out, seed=args.seed, device=device_of(args))
    print(f"wrote {path}")


def cmd_reconstruct(args) -> None:
    from .sample import reconstruct_grid
    if bool(args.images) == bool(args.from_data):
        raise GankitError("reconstruct: give either --images DIR or --from-data N")
    path = reconstruct_grid(args.run, args.out, images=args.images, from_data=args.from_data, seed=args.seed,
                            device=device_of(args))
    print(f"wrote {path} (pairs: original, reconstruction)")


def cmd_latent_view(args) -> None:
    from .sample import latent_view
    print(f"wrote {latent_view(args.run, args.out, args.attribute, args.n, args.method, args.seed, device_of(args))}")


def cmd_explore(args) -> None:
    from .latent.studio import Studio
    studio = Studio(args.run, seed=args.seed, device=device_of(args))
    if args.tool == "interpolate":
        record = studio.interpolate(args.pairs, args.steps, args.method, codes=args.codes)
    elif args.tool == "project":
        record = studio.project(args.images, args.n or 16, args.steps, args.restarts, args.lr)
        print(f"mean L1 error {record['mean_l1']:.4f} over {record['n']} images ({record['seconds']} s)")
    elif args.tool == "pca":
        record = studio.pca(args.source, args.n, args.k, args.columns, args.span)
        print("variance share of the top directions: " + ", ".join(f"{100 * s:.1f}%" for s in record["share"]))
    else:
        record = studio.attribute(args.names, args.method, args.fit, args.n, args.rows, args.columns, args.span,
                                  args.check, args.features)
        for key, r in record["results"].items():
            for a, share in r["share"].items():
                rising = "rises monotonically" if r["monotonic"][a] else "does not rise monotonically"
                print(f"{a} along {key}: labelled share " + " ".join(f"{100 * v:.0f}%" for v in share) + f" ({rising})")
    for f in record["files"]:
        print(f"wrote {f}")
    print(f"record: {record['json']}")


def cmd_serve(args) -> None:
    try:
        from .serve.app import serve
    except ImportError as e:
        raise GankitError(f"serve needs starlette, uvicorn and python-multipart: pip install 'gankit[serve]' ({e})") \
            from None
    attributes = tuple(a for a in args.attributes.split(",") if a)
    serve(args.run, args.host, args.port, n_pca=args.pca, attributes=attributes, seed=args.seed,
          device=device_of(args))


def cmd_gallery(args) -> None:
    from .gallery import gallery
    families = [f.strip().lower() for f in args.families.split(",") if f.strip()]
    for path in gallery(args.celeba, args.flowers, args.runs, args.out, families, args.set, args.n, args.n_eval,
                        progress=not args.quiet):
        print(f"wrote {path}")


def cmd_presets(args) -> None:
    from .config import load_preset, preset_description, preset_names
    from .families import REGISTRY
    for name in preset_names():
        cfg = load_preset(name)
        o, g, t = cfg.optim, cfg.gan, cfg.train
        extra = (f" n_critic={g.n_critic}" if g.n_critic > 1 else "") + (f" clip={g.clip}" if g.clip else "") \
            + (f" gp_lambda={g.gp_lambda}" if g.gp_lambda else "")
        aug = "+".join(k for k in ("flip", "rot90", "hsv") if getattr(cfg.augment, k)) or "none"
        print(f"{name:22s} {REGISTRY[cfg.model.family].describe(cfg)} batch={t.batch} {o.name} "
              f"lr={o.lr_g:g}/{o.lr_d:g}{f' x{o.lr_decay:g}/{o.lr_decay_every}' if o.lr_decay < 1 else ''}"
              f"{f' rampdown={o.lr_rampdown:g}' if o.lr_rampdown else ''} "
              f"betas=({o.beta1:g},{o.beta2:g}){extra} aug={aug} steps={t.steps}"
              + (f" max_minutes={t.max_minutes:g}" if t.max_minutes else "")
              + (f" clock_rampdown={t.clock_rampdown:g}" if t.max_minutes and t.clock_rampdown else "")
              + (f" ema={t.ema:g}" if t.ema else ""))
        if args.verbose:
            print(f"{'':22s} {preset_description(name)}")


VALUES = ("value", "precision", "recall", "density", "coverage")


def _print_result(result: dict, as_json: bool, label: str) -> None:
    if as_json:
        print(json.dumps(result))
    else:
        extra = f" +- {result['std']:.4g}" if "std" in result else ""
        values = " ".join(f"{v:.4f}" if k == "value" else f"{k} {v:.4f}" for k, v in result.items() if k in VALUES)
        rest = ", ".join(f"{k}={v}" for k, v in result.items() if k not in VALUES + ("std",))
        print(f"{label} {values}{extra}  ({rest})")


def cmd_fid(args) -> None:
    from .metrics.registry import compare_sets, feature_net_at, load_features, parse_metric
    if args.features and args.resize == "clean":
        raise GankitError("--resize clean: chooses the resize to the Inception network's 299 px; gankit's feature "
                          "networks (--features) see images at their own resolution")
    feats = feature_net_at(args.features) if args.features else \
        load_features(parse_metric(f"fid1k{'-clean' if args.resize == 'clean' else ''}"), args.fid_weights)
    kind = "kernel" if args.kid else "frechet"
    result = compare_sets(args.a, args.b, feats, kind, limit=args.limit, bf16=args.bf16, device=device_of(args))
    label = ("KID" if args.kid else "FID") if feats.name == "inception" else ("KD" if args.kid else "FD") + f"[{feats.name}]"
    _print_result(result, args.json, label)


def cmd_eval(args) -> None:
    from .metrics.registry import evaluate_many, parse_metric
    from .run import load_run
    from .training.monitor import MetricsLog
    metrics = [m + "-clean" if args.resize == "clean" and parse_metric(m).net == "inception"
               and not m.endswith("-clean") else m for m in args.metric]
    family, record = load_run(args.run, device_of(args))
    family.use_ema = not args.no_ema
    gen = torch_generator(args.seed, family.device)
    results = evaluate_many(metrics, lambda n: family.generate(family.sample_z(n, gen)), args.ref,
                            args.fid_weights, args.features, args.bf16, device=family.device)  # one pass of generation and features
    for metric, result in zip(metrics, results):
        result = {"step": record["step"], **result, **({"generator": "G" if args.no_ema else "ema"}
                                                         if family.ema is not None else {})}
        MetricsLog(Path(args.run) / "metrics.jsonl").append(result)
        _print_result(result, args.json, metric)


def cmd_export(args) -> None:
    from .exported import export
    out = export(args.run, args.out, n=args.n, seed=args.seed, overwrite=args.overwrite)
    print(f"exported {args.run} to {out} (config.json, model.safetensors, samples.png, README.md); "
          f"load it with gankit.load({str(out)!r})")


def torch_generator(seed: int, device="cpu"):
    import torch
    return torch.Generator(device).manual_seed(seed)


def device_of(args) -> str:
    """--device: auto (a GPU when there is one) | cpu | cuda | cuda:N, checked."""
    from .run import resolve_device
    return str(resolve_device(args.device))


def cmd_train_features(args) -> None:
    from .metrics.featnet import train_feature_net
    r = train_feature_net(args.data, args.out, epochs=args.epochs, batch=args.batch, progress=not args.quiet)
    print(f"feature network {r['name']}: held-out accuracy {r['heldout_accuracy']:.4f} "
          f"(majority baseline {r['majority_baseline']:.4f}) on {r['heldout_images']} images ({r['split']}), "
          f"{r['seconds']:.0f} s; saved to {Path(args.out) if args.out else Path(args.data) / 'features'}")


def cmd_fid_check(args) -> None:
    import warnings
    from .metrics.fidcheck import check_kit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = check_kit(args.kit, bf16=args.bf16)
    print(json.dumps(r))
    ok = r["pool3_rel_err"] < 1e-4 and r["fid_rel_err"] < 1e-6
    print("match" if ok else "MISMATCH")
    if not ok and not args.bf16:
        raise GankitError("features or FID differ from pytorch-fid beyond 1e-4 / 1e-6 relative")


def device_option(s) -> None:
    s.add_argument("--device", default="auto", help="auto (a GPU when there is one, else the CPU), cpu, cuda, cuda:N")


def run_command(sub, name: str, help: str, func, run_help: str = "run folder", device: bool = True):
    """A subcommand on one run folder, with --seed (and --device)."""
    s = sub.add_parser(name, help=help)
    s.add_argument("run", help=run_help)
    s.add_argument("--seed", type=int, default=0)
    if device:
        device_option(s)
    s.set_defaults(func=func)
    return s


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

    s = sub.add_parser("sample", help="sample a grid from a run's newest checkpoint (several runs: side by side)")
    s.add_argument("run", nargs="+", help="run folder(s)")
    s.add_argument("-n", type=int, default=64, help="number of images (default 64)")
    s.add_argument("--out", required=True, help="output PNG")
    s.add_argument("--seed", type=int, default=0)
    device_option(s)
    s.set_defaults(func=cmd_sample)

    def metric_options(s):
        s.add_argument("--fid-weights", help="pt_inception-2015-12-05-6726825d.pth (or $GANKIT_FID_WEIGHTS)")
        s.add_argument("--features", help="a gankit feature network folder (from train-features) instead of Inception")
        s.add_argument("--bf16", action="store_true", default=None,
                       help="bf16 autocast for feature extraction (faster, not exact; default: fp32 "
                            "unless GANKIT_PRECISION=bf16)")
        s.add_argument("--json", action="store_true", help="print the result as one JSON line")
        device_option(s)
        s.add_argument("--resize", choices=("legacy", "clean"), default="legacy",
                       help="to Inception's 299 px: legacy = pytorch-fid's bilinear (default), clean = clean-fid's "
                            "antialiased bicubic on float32 (eval: the same as naming fid10k-clean)")

    s = sub.add_parser("fid", help="FID (or KID) between two image sets: folders, prepared datasets or .npz")
    s.add_argument("a")
    s.add_argument("b")
    s.add_argument("--kid", action="store_true", help="kernel distance instead of Frechet")
    s.add_argument("--limit", type=int, help="at most N images of each set (cached for prepared datasets)")
    metric_options(s)
    s.set_defaults(func=cmd_fid)

    s = sub.add_parser("eval", help="a named metric of a run's generator against a reference set")
    s.add_argument("run", help="run folder")
    s.add_argument("--metric", required=True, action="append",
                   help="fid10k, kid10k, is10k, pr10k, dc10k (Inception; -clean: clean-fid's resize), fd-<net>10k, "
                        "kd-<net>10k, pr-<net>10k, dc-<net>10k (gankit's feature network); repeat for several "
                        "from one pass of generation and feature extraction")
    s.add_argument("--ref", required=True, help="reference set (a prepared dataset caches its statistics)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-ema", action="store_true", help="score the trained G, not its moving average (train.ema)")
    metric_options(s)
    s.set_defaults(func=cmd_eval)

    s = run_command(sub, "export", "a self-contained folder with the generator, a model card and samples", cmd_export,
                    device=False)
    s.add_argument("out", help="output folder (config.json, model.safetensors, samples.png, README.md)")
    s.add_argument("-n", type=int, default=64, help="samples in the card's grid")
    s.add_argument("--overwrite", action="store_true", help="write into a folder that is not empty")

    s = sub.add_parser("train-features", help="train gankit's feature network on a labelled prepared dataset")
    s.add_argument("data", help="prepared dataset with attributes or class labels")
    s.add_argument("--out", help="output folder (default DATA/features)")
    s.add_argument("--epochs", type=int, default=6)
    s.add_argument("--batch", type=int, default=128)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_train_features)

    s = sub.add_parser("fid-check", help="compare gankit's FID network with pytorch-fid on an equivalence kit")
    s.add_argument("kit", help="folder with keys.json, images.npz, expected.npz")
    s.add_argument("--bf16", action="store_true", help="measure the bf16 difference instead")
    s.set_defaults(func=cmd_fid_check)

    s = run_command(sub, "reconstruct", "originals beside reconstructions (VAE, VAE-GAN, BEGAN's autoencoder)",
                    cmd_reconstruct)
    s.add_argument("--images", help="folder of images (centre-cropped and resized to the model's size)")
    s.add_argument("--from-data", type=int, metavar="N", help="N random images of the run's dataset (at most 64)")
    s.add_argument("--out", default="reconstructions.png")

    s = run_command(sub, "latent-view", "2-D view (PCA or t-SNE) of a VAE's codes, coloured by an attribute",
                    cmd_latent_view, run_help="run folder of a VAE or VAE-GAN")
    s.add_argument("--attribute", help="colour by this attribute of the dataset (e.g. Smiling)")
    s.add_argument("-n", type=int, default=2000, help="images to encode")
    s.add_argument("--method", choices=["pca", "tsne"], default="pca")
    s.add_argument("--out", default="latent-view.png")

    s = sub.add_parser("explore", help="latent tools on a run: interpolate, project, pca, attribute")
    s.add_argument("run", help="run folder")
    tools = s.add_subparsers(dest="tool", required=True)

    def tool(name: str, help: str):
        t = tools.add_parser(name, help=help)
        t.add_argument("--seed", type=int, default=0)
        device_option(t)
        t.set_defaults(func=cmd_explore)
        return t

    def project_options(t):
        t.add_argument("--images", help="folder of images to project (default: random images of the run's data)")
        t.add_argument("-n", type=int, help="how many images (default 16)")
        t.add_argument("--steps", type=int, default=300, help="Adam steps (default 300)")
        t.add_argument("--restarts", type=int, default=4, help="codes tried per image (default 4)")
        t.add_argument("--lr", type=float, default=0.05)

    t = tool("interpolate", "rows of images between pairs of random codes")
    t.add_argument("--pairs", type=int, default=8)
    t.add_argument("--steps", type=int, default=10, help="images per row, endpoints included")
    t.add_argument("--method", choices=["slerp", "lerp"], default="slerp")
    t.add_argument("--codes", help="interpolate between consecutive codes of a file (e.g. explore/project-codes.pt)")
    project_options(tool("project", "find codes of real images by L1 optimisation"))
    t = tool("pca", "the mean code and walks along the top principal directions of codes")
    t.add_argument("--source", choices=["auto", "encoded", "projected", "prior"], default="auto",
                   help="codes of real images (encoded with VAE/VAE-GAN, else projected) or prior samples")
    t.add_argument("-n", type=int, help="codes (default 2000 encoded or prior, 128 projected)")
    t.add_argument("-k", type=int, default=6, help="directions (default 6)")
    t.add_argument("--columns", type=int, default=9)
    t.add_argument("--span", type=float, default=3.0, help="walk +-span standard deviations (default 3)")
    t = tool("attribute", "attribute directions (Smiling, Mustache, ...), offsets, sums and walks")
    t.add_argument("names", nargs="+", help="CelebA attribute names; two or more also give their sum")
    t.add_argument("--method", choices=["classifier", "labels"], default="classifier",
                   help="classifier: label prior samples with the attribute network; labels: the data's labels")
    t.add_argument("--fit", choices=["means", "linear"], default="means",
                   help="difference of means, or a logistic regression's normal")
    t.add_argument("-n", type=int, help="codes to fit on (default 4000 classifier, 2000 encoded, 256 projected)")
    t.add_argument("--rows", type=int, default=8)
    t.add_argument("--columns", type=int, default=9)
    t.add_argument("--span", type=float, default=3.0, help="offsets up to +-span standard deviations")
    t.add_argument("--check", type=int, default=512, help="codes labelled at each offset for the check")
    t.add_argument("--features", help="attribute network folder (default: the run's DATA/features)")

    s = sub.add_parser("project", help="find codes of real images by L1 optimisation (= explore RUN project)")
    s.add_argument("run", help="run folder")
    s.add_argument("--seed", type=int, default=0)
    device_option(s)
    project_options(s)
    s.set_defaults(func=cmd_explore, tool="project")

    s = sub.add_parser("serve", help="explore a run in the browser: samples, sliders, interpolation, projection")
    s.add_argument("run", help="run folder")
    s.add_argument("--port", type=int, default=7860)
    s.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: this machine only)")
    s.add_argument("--pca", type=int, default=6, help="PCA sliders (default 6)")
    s.add_argument("--attributes", default="Smiling,Wearing_Lipstick,Eyeglasses,Male,Blond_Hair,Mustache",
                   help="attribute sliders fitted at start when the data has an attribute network")
    s.add_argument("--seed", type=int, default=0)
    device_option(s)
    s.set_defaults(func=cmd_serve)

    from .gallery import FIGURE_SAMPLES  # (imports nothing heavy)
    s = sub.add_parser("gallery", help="train every family's CPU preset on CelebA-64 (and flowers), side by side")
    s.add_argument("--celeba", help="prepared CelebA-64 folder (trains on [:9000], scores on [9000:])")
    s.add_argument("--flowers", help="prepared flowers folder at 64 px (DCGAN, WGAN-GP, BEGAN with DiffAugment)")
    s.add_argument("--families", default="", help="comma list to run only these (dcgan,wgan,wgan-gp,began,vae,vaegan)")
    s.add_argument("--runs", default="runs/gallery", help="where the runs live; finished runs are reused")
    s.add_argument("--out", default="docs/figures", help="where the figures and tables go")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override for every run (e.g. train.max_minutes=5 for a quick gallery)")
    s.add_argument("-n", type=int, default=FIGURE_SAMPLES, help="samples per family in the figure")
    s.add_argument("--n-eval", type=int, default=10_000, help="generated images scored per family (default 10000)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_gallery)

    s = sub.add_parser("presets", help="list presets with their hyper-parameters")
    s.add_argument("-v", "--verbose", action="store_true", help="also print each preset's description")
    s.set_defaults(func=cmd_presets)
    return p


class _Console(logging.Handler):
    """The library's messages (the `gankit` logger) as the commands print them: information on stdout,
    warnings on stderr, each line prefixed; the streams are looked up when a line is written."""

    def emit(self, record: logging.LogRecord) -> None:
        warning = record.levelno >= logging.WARNING
        stream = sys.stderr if warning else sys.stdout
        stream.write(f"gankit: {'warning: ' if warning else ''}{record.getMessage()}\n")
        stream.flush()


def console_messages() -> None:
    """Show the library's information and warnings (once per process); API callers who never call
    the CLI see only warnings (Python's default), and silence those with
    logging.getLogger("gankit").setLevel(logging.ERROR)."""
    logger = logging.getLogger("gankit")
    if not any(isinstance(h, _Console) for h in logger.handlers):
        logger.addHandler(_Console())
        logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    try:  # each line reaches a pipe or log file when printed: a reader still has it after a SIGKILL
        sys.stdout.reconfigure(line_buffering=True)
    except (AttributeError, ValueError):  # no stdout, or a stand-in stream without reconfigure
        pass
    args = build_parser().parse_args(argv)
    console_messages()
    try:
        args.func(args)
    except GankitError as e:
        print(f"gankit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gankit: interrupted", file=sys.stderr)
        return 130
    return 0

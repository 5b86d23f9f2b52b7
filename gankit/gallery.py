"""The gallery: every family's CPU preset trained on the same data, side by side, with a table.

    gankit gallery --celeba data/celeba64 [--flowers data/flowers64] [--families dcgan,began]
                   [--runs runs/gallery] [--out docs/figures] [--set train.max_minutes=5]

CelebA-64: each family trains on the first 9,000 faces (`DATA[:9000]`) and is scored on the held-out
rest (`DATA[9000:]`) in gankit's CelebA feature space (fd-celeba-attr10k and kd-celeba-attr10k).
Flowers at 64 px: DCGAN and WGAN-GP with DiffAugment's translation (ADA's adaptive probability),
BEGAN with flips of the real images (its energy D takes no DiffAugment well, below), gamma 0.8 and its
rates ramped down over the last 80% of its steps,
scored against the whole set in the flowers' feature space. Each (data, family) run lives in RUNS/<data>-<family>/; a run that already finished is
reused, an interrupted one resumed. Writes one figure per dataset (the families' samples side by
side, labelled) and a Markdown table (family, preset, whether the samples come from G's moving
average or G itself, steps, images, wall and CPU minutes, CPU, FD, KD, precision/recall and
density/coverage).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from .errors import GankitError

# family label -> the CPU preset it trains. Faces: DCGAN and WGAN (clipping) with the k4 networks (4x4
# kernels, the DCGAN paper's), which at about equal CPU reached held-out fd-celeba-attr10k 6.5 and 10.5 (7.3 and
# 14.8 under a second seed) where the conv3 table's twins reached 7.2 and 15.4; DCGAN's with G at width 40
# beside D's 24 (its preset since the eighteenth session) 5.8 and 6.4 (BENCHMARKS.md)
CELEBA_FAMILIES = {"DCGAN": "dcgan-k4-64-cpu", "WGAN (clipping)": "wgan-k4-64-cpu", "WGAN-GP": "wgan-gp-64-cpu",
                   "BEGAN": "began-64-cpu", "VAE": "vae-64-cpu", "VAE-GAN": "vaegan-64-cpu"}
# Flowers: DCGAN's k4 twin too (0.57 against the conv3 twin's 0.68, sixteenth session; with G at 40, 0.49)
FLOWER_FAMILIES = {"DCGAN": "dcgan-k4-64-cpu", "WGAN-GP": "wgan-gp-64-cpu", "BEGAN": "began-64-cpu"}
# DCGAN and WGAN-GP's flowers: DiffAugment's translation alone. On the DCGAN twin (1,360 flowers, 9,000
# steps, about equal CPU time) fd-flowers-class10k 0.74 with it, 2.38 with no augmentation, 2.59 with
# all three transforms (colour and cutout cost more per step and, as we read it, slowed G more than they
# held D back); WGAN-GP's twin with it, at 5 critic steps, 2.16 at 4,600 steps (3.56 at 2,899), 8.56 with all
# three at 2,600 (BENCHMARKS.md); with the twin's 2 critic steps (since the twenty-ninth session) for 10,400 steps,
# the same CPU, 2.00 against 3.28 for 5 at 4,600, ahead at all four evaluations (an Ice Lake's feature network,
# one core each, thirtieth session, one seed)
DIFFAUG = ["augment.diffaug=translation"]
ADA = ["augment.ada_target=0.6", "augment.p=0"]
# BEGAN: flips of the real flowers (a flower's mirror image is a flower), no DiffAugment. Its D is an
# autoencoder and G lowers D's reconstruction error of what D sees, so what D reconstructs well from
# augmented reals is cheap for G: with DiffAugment's colour transform BEGAN's flowers stayed grey, with
# translation and cutout they were grey or yellow blobs; with flips, yellow blooms and lilac patches on
# green (fd-flowers-class10k 64.7 against 103.1; 90-degree turns on top no better, BENCHMARKS.md). The
# rates ramped down over the last 80% of the steps, not the twin's 40%: at a constant rate its flowers
# stopped gaining after the first 2,450 steps (45.8, 49.3, 54.1, 49.6, 42.1, 48.5 at the six evaluations) and
# the ramp over the last 40% took them from 49.6 to 28.3 (twenty-first session); over the last 80% they led
# the 40% ramp at every evaluation after its start and ended at 31.3 against 34.0 (kd 0.173 against 0.205,
# recall 0.32 against 0.21; an Ice Lake's feature network, twenty-seventh session, one seed). Gamma 0.8, not
# the twin's 0.85: at a constant rate 0.7 had reached 52.7 (yellow blooms and white petals on green, 80.3 at
# 0.5: pale blobs) and 0.85 collapsed near step 12,000 to striped olive blobs (fourteenth session); under the
# 80% ramp 0.8 led 0.7 at the last three evaluations and ended at 26.6 against 31.3 (kd 0.139 against
# 0.173, recall 0.35 against 0.32), purple and violet flowers beside the yellow (twenty-eighth session,
# one seed; the plain D, model.skip=false, ended level at 30.8, behind at every evaluation before the last)
BEGAN_FLOWERS = ["augment.flip=true", "gan.gamma=0.8", "optim.lr_rampdown=0.8"]
HELD_OUT = 9000  # CelebA: train on [:9000], score on the held-out [9000:]
FIGURE_SAMPLES = 20  # per family: six families of 5 x 4 samples keep the CelebA figure under 1 MiB


@dataclass
class Job:
    data_name: str  # celeba | flowers
    label: str  # the family's name in the figure and table
    preset: str
    train_data: str
    ref: str
    overrides: list[str]

    @cached_property
    def config(self):
        """The preset with the job's overrides: what a new run of this job trains with."""
        from .config import apply_overrides, load_preset
        return apply_overrides(load_preset(self.preset), self.overrides)

    @property
    def ema(self) -> bool:
        """Scored and drawn from G's moving average, as the preset samples (False: G itself)."""
        return self.config.train.ema > 0

    @property
    def key(self) -> str:
        return f"{self.data_name}-{stem(self.preset)}"


def stem(preset: str) -> str:
    """The family's name in `--families` and run folders: dcgan, wgan, wgan-gp, began, vae, vaegan (a run
    of the family's earlier design there is reused, naming what its preset changed since)."""
    return preset.removesuffix("-64-cpu").removesuffix("-k4")


def held_out_start(data: str) -> int:
    """Where the held-out faces start: 9,000 of CelebA's 10,000 here; 90% of a smaller set."""
    try:
        count = json.loads((Path(data) / "meta.json").read_text())["count"]
    except (OSError, ValueError, KeyError):
        raise GankitError(f"--celeba {data}: not a prepared dataset (gankit prepare celeba ... --res 64)") from None
    return min(HELD_OUT, int(0.9 * count))


def plan(celeba: str | None, flowers: str | None, families: list[str] | None, extra: list[str]) -> list[Job]:
    """The runs the gallery needs: (data, family) pairs, limited to `families` (preset stems or labels)."""
    def wanted(label: str, preset: str) -> bool:
        return not families or stem(preset) in families or label.lower() in families

    jobs = []
    if celeba:
        cut = held_out_start(celeba)
        for label, preset in CELEBA_FAMILIES.items():
            if wanted(label, preset):
                jobs.append(Job("celeba", label, preset, f"{celeba}[:{cut}]", f"{celeba}[{cut}:]", list(extra)))
    if flowers:
        for label, preset in FLOWER_FAMILIES.items():
            if wanted(label, preset):
                aug = BEGAN_FLOWERS if preset.startswith("began") else DIFFAUG + ADA
                jobs.append(Job("flowers", label, preset, flowers, flowers, aug + list(extra)))
    if not jobs:
        raise GankitError("gallery: nothing to do (give --celeba and/or --flowers, and families that exist: "
                          "dcgan, wgan, wgan-gp, began, vae, vaegan)")
    return jobs


def minutes_of(seconds: dict | None) -> dict:
    """The table's wall and CPU minutes from a checkpoint's record of training time (None: unknown)."""
    return {"minutes": None if seconds is None else round(seconds["wall"] / 60, 1),
            "cpu_minutes": None if seconds is None else round(seconds["cpu"] / 60, 1)}


def finished(run: Path | None) -> dict | None:
    """The gallery's record of a run that trained to its end (its steps or its time budget), else None.
    A run continued since outside the gallery (`gankit train --resume`) is recorded at its newest
    checkpoint: its steps, images and training time from there (the time unknown, None, when that
    checkpoint predates the record)."""
    done = run / "gallery.json" if run is not None else None
    if done is None or not done.exists():
        return None
    record = json.loads(done.read_text())
    newest = _newest_checkpoint(run)
    if newest is not None and newest["step"] != record["step"]:
        record.update(step=newest["step"], images=newest.get("images_seen"), **minutes_of(newest.get("seconds")),
                      note=f"continued outside the gallery from step {record['step']:,}")
        done.write_text(json.dumps(record, indent=1))
    return record


def run_of(job: Job, runs: Path) -> Path | None:
    """The job's run folder (RUNS/<key>/<numbered run>), if it was started."""
    found = sorted((runs / job.key).glob("[0-9]*-*"))
    return found[-1] if found else None


def train(job: Job, runs: Path, progress: bool) -> Path:
    """Train (or resume, or reuse) the job's run; return its folder."""
    from .config import apply_overrides, load_preset
    from .training import Trainer
    from .training.checkpoint import list_checkpoints
    run = run_of(job, runs)
    if finished(run):
        changed = drift(job, run)
        if changed:  # reused all the same: the figure is what was trained; the user decides
            print(f"gallery: {run} was trained with {', '.join(changed)} (the preset now differs); "
                  f"move it away to train it again", file=sys.stderr)
        return run
    if run is not None and list_checkpoints(run / "checkpoints"):
        trainer = Trainer.resume(run, [], progress=progress)
    else:
        cfg = apply_overrides(load_preset(job.preset), job.overrides)
        trainer = Trainer.new(cfg, job.train_data, runs_root=runs / job.key, progress=progress)
        run = trainer.run_dir
    last = trainer.run()
    if trainer._stop_signal is not None:  # interrupted: resumed next time
        raise GankitError(f"gallery: {job.key} stopped by a signal at step {trainer.step}; run the command again "
                          f"to continue")
    import torch

    from .env import cpu_name
    # the run's training time over every session, wherever it was trained (its checkpoints record it).
    # CPU minutes: the process's CPU time over its threads; with one thread it is the wall time the run
    # would take alone on a core, even while other work shares that core
    record = {"step": trainer.step, "images": trainer.images_seen(), **minutes_of(trainer.seconds()),
              "cpu": cpu_name(), "threads": torch.get_num_threads(), "last": last}
    (run / "gallery.json").write_text(json.dumps(record, indent=1))
    return run


def score(job: Job, run: Path, feature_net: str, n: int) -> dict:
    """FD, KD, precision/recall and density/coverage of n samples against the job's reference in the
    feature net's space, from one pass of generation and feature extraction; cached in the run folder."""
    from .metrics.registry import KINDS, MetricSpec, evaluate_many
    from .run import load_run
    import torch
    cached = run / "gallery-metrics.json"
    keys = ("fd", "kd", "precision", "recall", "density", "coverage")
    sampled_ema = job.ema and trained_ema(run)  # the generator the samples come from
    # how the average's BatchNorm statistics were made: 0 = copied from G (every score cached before
    # the average estimated its own, whose "ema_bn" is missing)
    ema_bn = _ema_bn(run) if sampled_ema else None
    if cached.exists():
        old = json.loads(cached.read_text())
        # the same samples (step, average or G) against the same images, however the path was written
        if ((old.get("n"), old.get("step"), _ref_key(old.get("ref")), old.get("ema", trained_ema(run)),
             old.get("ema_bn", 0) if sampled_ema else None) ==
                (n, _step(run), _ref_key(job.ref), sampled_ema, ema_bn) and all(k in old for k in keys)):
            return old
    family, _ = load_run(run)
    family.use_ema = job.ema  # a run trained with an average the preset no longer keeps is scored as G itself
    gen = torch.Generator().manual_seed(0)
    specs = [MetricSpec(f"{m}-{feature_net}", KINDS[m], feature_net, n) for m in ("fd", "kd", "pr", "dc")]
    fd, kd, pr, dc = evaluate_many(specs,
                                   lambda m: family.generate(family.sample_z(m, gen)), job.ref)
    out = {"n": n, "step": _step(run), "ref": _ref_key(job.ref), "ema": sampled_ema, "ema_bn": ema_bn,
           "n_reference": fd["n_reference"], "features": fd["features"], "fd": fd["value"],
           "kd": kd["value"], "kd_std": kd["std"], **{x: pr[x] for x in ("precision", "recall")},
           **{x: dc[x] for x in ("density", "coverage")}}
    cached.write_text(json.dumps(out, indent=1))
    return out


def gallery(celeba: str | None, flowers: str | None, runs: str | Path, out: str | Path,
            families: list[str] | None = None, extra: list[str] | None = None, n: int = FIGURE_SAMPLES,
            n_eval: int = 10_000, progress: bool = True) -> list[Path]:
    """Train what is missing, score, and write the figures and tables; returns the files written."""
    from .sample import sample_grid
    runs, out = Path(runs), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = plan(celeba, flowers, families, extra or [])
    written = []
    for data_name in dict.fromkeys(j.data_name for j in jobs):
        these = [j for j in jobs if j.data_name == data_name]
        rows = []
        for job in these:
            run = train(job, runs, progress)
            feature_net = _feature_net_name(job.ref)
            metrics = score(job, run, feature_net, n_eval)
            done = finished(run)
            rows.append((job, run, done, metrics, feature_net))
        figure = sample_grid([r[1] for r in rows], n, out / f"gallery-{data_name}.png",
                             labels=[r[0].label for r in rows], ema=[r[0].ema for r in rows])
        k = f"{n_eval // 1000}k" if n_eval % 1000 == 0 else str(n_eval)
        table = [f"| family | preset | sampled from | steps | images | minutes (wall) | CPU minutes | CPU | "
                 f"fd-{rows[0][4]}{k} | kd-{rows[0][4]}{k} | precision | recall | density | coverage |",
                 "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for job, run, done, m, _ in rows:
            minutes, cpu_minutes = ("?" if done.get(k) is None else done[k] for k in ("minutes", "cpu_minutes"))
            ema = m["ema"] if "ema" in m else job.ema and trained_ema(run)  # (a score cached before "ema")
            table.append(f"| {job.label} | {job.preset}{tuned(job)}{augmentation(run)} | {'EMA' if ema else 'G'} | "
                         f"{done['step']:,} | {'?' if done.get('images') is None else format(done['images'], ',')} | "
                         f"{minutes} | {cpu_minutes} | {done.get('cpu', '?')}, "
                         f"{threads_text(done.get('threads'))} | "
                         f"{m['fd']:.2f} | {m['kd']:.4f} | {m['precision']:.3f} | {m['recall']:.3f} | "
                         f"{m['density']:.3f} | {m['coverage']:.3f} |")
        md = out / f"gallery-{data_name}.md"
        md.write_text("\n".join(table) + "\n")
        written += [figure, md]
    return written


def threads_text(threads: int | None) -> str:
    return "? threads" if threads is None else f"{threads} thread{'' if threads == 1 else 's'}"


def tuned(job: Job) -> str:
    """For the table: what the gallery itself sets beyond the preset for the job's data, other than the
    augmentation (BEGAN's flowers: ", gan.gamma 0.8, optim.lr_rampdown 0.8"), at the value the job trains
    with; "" where none."""
    from .config import load_preset
    preset, shown = load_preset(job.preset), []
    for key in dict.fromkeys(o.split("=", 1)[0] for o in BEGAN_FLOWERS + DIFFAUG + ADA):
        section, field = key.split(".", 1)
        value = getattr(getattr(job.config, section), field)
        if section != "augment" and value != getattr(getattr(preset, section), field):
            shown.append(f", {key} {value:g}")
    return "".join(shown)


def augmentation(run: Path) -> str:
    """What the run's config adds to its preset's name in the table: the real images' flips, turns and
    HSV jitter, and DiffAugment (with ADA's target)."""
    a = json.loads((run / "config.json").read_text())["augment"]
    real = [name for key, name in (("flip", "flips"), ("rot90", "90-degree turns"), ("hsv", "HSV jitter"))
            if a.get(key)]
    text = f" + {', '.join(real)} of the real images" if real else ""
    if not a.get("diffaug"):
        return text
    return text + f" + DiffAugment ({a['diffaug']}" + (f", ADA target {a['ada_target']:g})" if a.get("ada_target")
                                                       else f", p {a.get('p', 1):g})")


# settings that leave the trained generator as it is: how a run reports, stores and where it runs
# (train.ema too: the gallery samples as the preset does, whatever average the run kept)
NOT_TRAINING = {"max_minutes", "device", "precision", "channels_last", "compile", "log_every", "sample_every",
                "ckpt_every", "keep_ckpts", "grid", "ema", "metric", "metric_every", "metric_ref",
                "metric_features", "metric_raw"}


def drift(job: Job, run: Path) -> list[str]:
    """`section.key=value` for each training setting the run had that the job's preset and overrides
    no longer give."""
    from .config import Config
    want = job.config.to_dict()
    # read as the run is rebuilt: a key its config.json predates takes the default it trained with
    got = Config.from_dict(json.loads((run / "config.json").read_text())).to_dict()
    return [f"{section}.{key}={got[section][key]}" for section, fields in want.items() if isinstance(fields, dict)
            for key, value in fields.items() if not (section == "train" and key in NOT_TRAINING)
            and got[section][key] != value]


def _trained_config(run: Path):
    """The run's Config as load_run builds it: its newest checkpoint's (a key the config predates takes
    the default), else config.json's."""
    from .config import Config
    newest = _newest_checkpoint(run)
    return Config.from_dict(newest["config"] if newest else json.loads((run / "config.json").read_text()))


def trained_ema(run: Path) -> bool:
    """Whether the run kept a moving average of G."""
    return _trained_config(run).train.ema > 0


def _ema_bn(run: Path) -> int:
    """The run's train.ema_bn_images (how its average's BatchNorm statistics were made)."""
    return _trained_config(run).train.ema_bn_images


def _ref_key(ref: str | None) -> str | None:
    """A reference ("FOLDER" or "FOLDER[a:b]", the slice at the end as datasets read it) with its
    folder made absolute."""
    if ref is None:
        return None
    folder, rows = (ref[:ref.rindex("[")], ref[ref.rindex("["):]) if ref.endswith("]") and "[" in ref else (ref, "")
    return str(Path(folder).resolve()) + rows


def _newest_checkpoint(run: Path) -> dict | None:
    from .training.checkpoint import list_checkpoints
    found = list_checkpoints(run / "checkpoints")
    return json.loads(found[-1].read_text()) if found else None


def _step(run: Path) -> int | None:
    """The step of the run's newest checkpoint (scores cached for another step are stale)."""
    from .training.checkpoint import newest_step
    return newest_step(run / "checkpoints")


def _feature_net_name(ref: str) -> str:
    from .data.dataset import split_rows
    from .metrics.featnet import load_feature_net
    folder = Path(split_rows(ref)[0]) / "features"
    try:
        _, report = load_feature_net(folder)
    except GankitError:
        raise GankitError(f"gallery: no feature network at {folder}; make one with "
                          f"`gankit train-features {split_rows(ref)[0]}`") from None
    return report["name"]

"""The one training loop every family shares.

A family supplies networks and a per-batch `step`; the trainer owns everything around it: the
device and precision, the batch stream and augmentation, fixed-z sample grids, JSON-lines metrics,
TensorBoard, the progress bar with images/s and model-FLOPs utilisation, checkpoints and plots.
"""
from __future__ import annotations

import json
import logging
import math
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .. import __version__
from ..config import Config
from ..data import BUILTIN, BatchStream, to_float
from ..data.augment import augment
from ..data.dataset import split_rows
from ..env import resolve_precision
from ..errors import GankitError
from ..families import Family, build_family
from ..run import check_writable, new_run_dir, open_dataset, resolve_device
from ..images import grid, save_png, to_uint8
from . import distributed as ddp
from .checkpoint import (list_checkpoints, load_latest, remove_stale_temporaries, save_checkpoint,
                         write_text_atomic)
from .monitor import MetricsLog, TensorBoard, plot_convergence, plot_metrics
from .speed import peak_flops, step_flops

log = logging.getLogger(__name__)
# plots/ is redrawn at a checkpoint once this many seconds have passed since the last drawing (or since
# run() began), and at the end of run(): matplotlib takes about a second for a family's figures, which
# at every checkpoint of a fast run (a 32-px twin's come every 15-40 s on a CPU) was several percent of it
PLOT_SECONDS = 60.0


class Trainer:
    """Build with `Trainer.new(...)` or `Trainer.resume(...)`, then call `run()`."""

    def __init__(self, cfg: Config, run_dir: Path, data: str, progress: bool = True, world: ddp.World = ddp.World()):
        self.cfg, self.run_dir, self.data_arg, self.world = cfg, run_dir, data, world
        self.progress = progress and world.main
        t = cfg.train
        self.device = resolve_device(t.device, world.local_rank)
        self.precision = resolve_precision(self.device, t.precision)
        self.dataset = open_dataset(data, cfg.model.res)
        if self.dataset.res != cfg.model.res:
            raise GankitError(f"--data {data}: images are {self.dataset.res} px but the model is {cfg.model.res} px "
                              f"(prepare with --res {cfg.model.res} or --set model.res={self.dataset.res})")
        torch.manual_seed(t.seed)
        self.family: Family = build_family(cfg, self.device, self.precision)
        # the stream's unit: one global batch, each rank training on its own shard of it; a step takes
        # the family's count of them (n_critic for WGAN critics, more in a critic burst)
        self.stream = BatchStream(len(self.dataset), t.batch * world.size, t.seed, world.rank, world.size)
        self.gen = torch.Generator(self.device).manual_seed(t.seed + 1_000_003 * world.rank)
        self.install_step_hooks()
        if world.active:
            self.sync_from_rank0()
        self.fixed_z = self.family.sample_z(t.grid, torch.Generator(self.device).manual_seed(t.seed + 1))
        self.step = 0
        self.metrics = MetricsLog(run_dir / "metrics.jsonl")  # written by rank 0 only
        self._stop_signal: int | None = None
        self.best: float | None = None  # best value of train.metric so far (lower is better)
        # on a GPU, the whole prepared uint8 array is copied there once when it takes under a
        # quarter of the free memory: batches are then gathered without host work
        self._device_images = None
        if self.device.type == "cuda" and self.dataset.images.nbytes < torch.cuda.mem_get_info(self.device)[0] / 4:
            self._device_images = torch.from_numpy(np.ascontiguousarray(self.dataset.images)).to(self.device)
        self.lr_scale = 1.0  # lowered by each roll-back after a non-finite loss or weight
        self.rollbacks = 0
        # optim.plateau_factor: the convergence measure's window sum and the learning-rate scale it set
        self.plateau = {"sum": 0.0, "count": 0, "best": None, "scale": 1.0}
        self._plateau_acc: torch.Tensor | None = None
        self._features = None  # the metric's feature network, loaded once
        # wall and CPU seconds this run trained before the current `run()` call, over every session (its
        # checkpoints record them; None when it resumed from a checkpoint that predates the record)
        self.spent: dict[str, float] | None = {"wall": 0.0, "cpu": 0.0}
        self._clock: tuple[float, float] | None = None  # (monotonic, process time) when `run()` began
        # train.schedule_clock: the step the time used stands for (under torchrun agreed at log steps),
        # whether it has moved the ramp yet, and the step schedules' factor the rates were last set to
        self._clock_step = 0
        self._clock_led = False
        self._schedule = 1.0
        self._plotted = (-1, 0.0)  # (step, monotonic time) the plots were last drawn at

    # --- construction ----------------------------------------------------------------------------
    @classmethod
    def new(cls, cfg: Config, data: str, runs_root: str | Path = "runs", progress: bool = True,
            world: ddp.World = ddp.World()) -> "Trainer":
        cfg.validate()
        base, rows = split_rows(data)
        data_name = BUILTIN if data == BUILTIN else Path(base).name + (
            f"-{rows.start or 0}-{rows.stop if rows.stop is not None else 'end'}" if data != base else "")
        run_dir = new_run_dir(Path(runs_root), cfg.preset, data_name) if world.main else None
        if world.active:
            run_dir = ddp.broadcast_object(run_dir, world)
        try:
            trainer = cls(cfg, run_dir, data, progress, world)
        except BaseException:
            if world.main and not any(run_dir.iterdir()):
                run_dir.rmdir()
            raise
        if world.main:
            write_text_atomic(run_dir / "config.json", cfg.to_json())
            write_text_atomic(run_dir / "run.json", json.dumps(trainer.describe(), indent=2))
        return trainer

    @classmethod
    def resume(cls, run_dir: str | Path, overrides: list[str] | None = None, data: str | None = None,
               progress: bool = True, world: ddp.World = ddp.World()) -> "Trainer":
        """Continue a run from its newest intact checkpoint, with any number of processes (bit-exact
        in a single fp32 process; with several, the data shards and noise streams differ)."""
        from ..config import apply_overrides
        run_dir = Path(run_dir)
        for name in ("config.json", "run.json"):
            try:
                loaded = json.loads((run_dir / name).read_text())
            except (OSError, ValueError) as e:
                raise GankitError(f"--resume {run_dir / name}: unreadable, is this a gankit run folder? ({e})") from None
            if name == "config.json":
                try:
                    cfg = Config.from_dict(loaded)
                except GankitError as e:
                    raise GankitError(f"--resume {run_dir / name}: {e}") from None
            else:
                info = loaded
        cfg = apply_overrides(cfg, overrides or [])
        trainer = cls(cfg, run_dir, data or info["data"], progress, world)
        if world.main:
            remove_stale_temporaries(run_dir / "checkpoints")
        if world.active:
            ddp.broadcast_object(None, world)  # a barrier: temporaries are gone before anyone lists
        loaded = load_latest(run_dir / "checkpoints")
        if loaded is None:
            raise GankitError(f"--resume {run_dir}: no intact checkpoint in {run_dir / 'checkpoints'}")
        state, record = loaded
        trainer.load_state(state, record["step"])
        trainer.spent = record.get("seconds")  # the time that led to this checkpoint (lost work after it is not)
        if world.active:
            # the checkpoint holds rank 0's noise stream; every rank needs its own
            trainer.gen.manual_seed(cfg.train.seed + 1_000_003 * world.rank + 7 * trainer.step)
            trainer.sync_from_rank0()
        if world.main:
            trainer.metrics.truncate_after(trainer.step)
            write_text_atomic(run_dir / "config.json", cfg.to_json())
        return trainer

    def sync_from_rank0(self) -> None:
        """Give every rank rank 0's weights, buffers and family state."""
        tensors = [t for net in self.family.nets.values() for t in (*net.parameters(), *net.buffers())]
        tensors += [v for v in self.family.extra_state().values() if torch.is_tensor(v)]
        for t in tensors:
            torch.distributed.broadcast(t.data, 0)

    def describe(self) -> dict:
        data = self.data_arg if self.data_arg == BUILTIN else str(Path(self.data_arg).resolve())
        return {"data": data, "dataset": self.dataset.meta.get("source"), "images": len(self.dataset),
                "device": str(self.device), "precision": "bf16" if self.precision else "fp32",
                "processes": self.world.size,
                "gankit": __version__, "torch": torch.__version__}

    # --- state ----------------------------------------------------------------------------------------
    def state(self) -> dict:
        self.fold_plateau()
        return {"family": self.family.state_dict(), "gen": self.gen.get_state(),
                "torch_rng": torch.get_rng_state(), "best_metric": self.best,
                "lr_scale": self.lr_scale, "rollbacks": self.rollbacks, "plateau": dict(self.plateau)}

    def load_state(self, state: dict, step: int) -> None:
        try:
            self.family.load_state_dict(state["family"])
        except (RuntimeError, KeyError, ValueError) as e:
            raise GankitError(f"checkpoint at step {step} does not fit this config "
                              f"({str(e).splitlines()[0][:160]}); was a model option changed on resume?") from None
        self.gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])
        self.best = state.get("best_metric")
        self.lr_scale = state.get("lr_scale", 1.0)
        self.rollbacks = state.get("rollbacks", 0)
        self.plateau.update(state.get("plateau", {}))
        self._plateau_acc = None
        self.step = step
        self.apply_lr()

    def apply_lr(self) -> None:
        """Learning rates: configured x roll-back scale x plateau scale x the step schedules."""
        self._schedule = self.lr_schedule()
        self.family.scale_lr(self.lr_scale * self.plateau["scale"] * self._schedule)

    def lr_schedule(self) -> float:
        """The step schedules' factor now: optim.lr_decay once per lr_decay_every steps taken, and the
        ramp down where `schedule_step` puts it."""
        o = self.cfg.optim
        return o.lr_decay ** (self.step // o.lr_decay_every) * self.rampdown(self.schedule_step())

    def schedule_step(self) -> int:
        """Where the ramp down (optim.lr_rampdown, train.clock_rampdown) stands: the step, or with
        train.schedule_clock, when train.max_minutes would stop the run first (a slower CPU), the same share of train.steps as of
        the minutes used, so that the rates still reach their low end before the time limit (at most the
        final step's). optim.lr_decay's halvings stay in steps: moved forward with the clock, they had
        cut a run that a slow CPU stops early while it was still far from trained (BENCHMARKS.md)."""
        return max(self.step, min(self.cfg.train.steps - 1, self._clock_step))

    def tick_clock(self) -> None:
        """Refresh the step the time used stands for (train.schedule_clock; under torchrun at log steps,
        the furthest rank's, so that every rank keeps the same rates)."""
        t = self.cfg.train
        if not (t.max_minutes and t.schedule_clock) or (self.world.active and self.step % t.log_every):
            return
        spent = self.seconds()
        if spent is None:  # resumed from a checkpoint that predates the time record: steps alone
            return
        clock = int(t.steps * spent["wall"] / (60 * t.max_minutes))
        self._clock_step = int(ddp.max_over_ranks(clock, self.world, self.device)) if self.world.active else clock

    def ramp_share(self) -> float:
        """The share of train.steps the ramp down spans: optim.lr_rampdown, or train.clock_rampdown where
        larger while the clock leads the step (train.max_minutes will stop the run first)."""
        share = self.cfg.optim.lr_rampdown
        return max(share, self.cfg.train.clock_rampdown) if self._clock_step > self.step else share

    def rampdown(self, step: int) -> float:
        """The ramp down's factor at `step`: 1 until the ramp starts, then linear, 1 / span at the
        final step (the next, never taken, would be zero)."""
        steps, frac = self.cfg.train.steps, self.ramp_share()
        span = max(1, round(steps * frac)) if frac > 0 else 0
        return min(1.0, (steps - step) / span) if span else 1.0

    def fold_plateau(self) -> None:
        """Add the device-side running sum of the convergence measure to the saved window sum."""
        if self._plateau_acc is not None:
            self.plateau["sum"] += float(self._plateau_acc)
            self._plateau_acc = None

    def watch_plateau(self, out: dict[str, torch.Tensor]) -> None:
        """Sum the convergence measure over a window of optim.plateau_every steps; at the window's
        end, scale the learning rates by optim.plateau_factor unless its mean fell by 1% below the
        best window's (BEGAN: the learning rate halves when M_global stalls)."""
        o, pl = self.cfg.optim, self.plateau
        if o.plateau_factor >= 1 or self.family.convergence not in out:
            return
        value = out[self.family.convergence].detach().double()  # summed on the device: no host sync a step
        self._plateau_acc = value if self._plateau_acc is None else self._plateau_acc + value
        pl["count"] += 1
        if self.step % o.plateau_every:
            return
        self.fold_plateau()
        if self.world.active:  # every rank judges the same window mean, so all keep the same rates
            window = torch.tensor([pl["sum"], float(pl["count"])], device=self.device)
            ddp.average_tensors([window], self.world)
            pl["sum"], pl["count"] = float(window[0]), int(round(float(window[1])))
        mean = pl["sum"] / max(pl["count"], 1)
        pl["sum"], pl["count"] = 0.0, 0
        if pl["best"] is None or mean < 0.99 * pl["best"]:
            pl["best"] = mean
            return
        pl["scale"] *= o.plateau_factor
        self.apply_lr()
        if self.world.main:
            self.metrics.append({"step": self.step, "plateau": self.family.convergence, "window_mean": mean,
                                 "best_window": pl["best"], "lr_scale": pl["scale"]})
            log.info("%s stalled at step %d (window mean %.4g, best %.4g): learning rates x%g",
                     self.family.convergence, self.step, mean, pl["best"], pl["scale"])

    def nonfinite_nets(self) -> list[str]:
        """Names of the networks with a NaN or Inf weight."""
        return [name for name, net in self.family.nets.items()
                if not all(torch.isfinite(p).all() for p in net.parameters())]

    def weights_finite(self) -> bool:
        return not self.nonfinite_nets()

    def rollback(self, what: str, at_step: int | None = None) -> None:
        """After a non-finite `what` at this step: back to the newest intact checkpoint with lower
        learning rates and a fresh noise stream, or stop after train.nan_retries roll-backs."""
        t = self.cfg.train
        ckpts = list_checkpoints(self.run_dir / "checkpoints")
        last = ckpts[-1] if ckpts else "none"
        if self.rollbacks >= t.nan_retries:
            raise GankitError(f"non-finite {what} at step {at_step or self.step} after {self.rollbacks} roll-back(s) "
                              f"(train.nan_retries={t.nan_retries}); stopping. Last good checkpoint: {last}; "
                              f"lower optim.lr_g / optim.lr_d and resume")
        loaded = load_latest(self.run_dir / "checkpoints")
        if loaded is None:
            raise GankitError(f"non-finite {what} at step {at_step or self.step} before any checkpoint; "
                              f"lower optim.lr_g / optim.lr_d (or train.ckpt_every) and start again")
        state, record = loaded
        bad_step, rollbacks = at_step or self.step, self.rollbacks + 1
        self.load_state(state, record["step"])
        self.rollbacks = rollbacks
        self.lr_scale *= t.nan_lr_factor
        self.apply_lr()
        self.gen.manual_seed(t.seed + 1_000_003 * self.world.rank + 7919 * rollbacks + self.step)
        if self.world.main:
            self.metrics.truncate_after(self.step)
            self.metrics.append({"step": self.step, "rollback": rollbacks, "non_finite": what, "at_step": bad_step,
                                 "lr_scale": self.lr_scale})
            log.warning("non-finite %s at step %d; rolled back to step %d (%s), learning rates x%g (%d/%d)",
                        what, bad_step, self.step, record["tensors"], self.lr_scale, rollbacks, t.nan_retries)

    def checkpoint(self) -> Path | None:
        """Write a checkpoint (rank 0; other ranks only check) and refresh the plots when they are due."""
        bad = self.nonfinite_nets()
        if bad:  # never overwrite good checkpoints with a diverged state (every rank checks: same weights)
            ckpts = list_checkpoints(self.run_dir / "checkpoints")
            raise GankitError(f"non-finite weights in {', '.join(bad)} at step {self.step}; not checkpointed; "
                              f"last good checkpoint: {ckpts[-1] if ckpts else 'none'} (try a lower learning rate)")
        if not self.world.main:
            return None
        path = save_checkpoint(self.run_dir / "checkpoints", self.step, self.state(),
                               {"config": self.cfg.to_dict(), "images_seen": self.images_seen(),
                                "processes": self.world.size, "seconds": self.seconds()},
                               keep=self.cfg.train.keep_ckpts)
        if time.monotonic() - self._plotted[1] >= PLOT_SECONDS:
            self.plot()
        return path

    def disk_needed(self) -> int:
        """Bytes the run may still write: (keep_ckpts + 1) checkpoints of this state, and 64 MiB for
        samples, plots and logs."""
        state_bytes = sum(t.numel() * t.element_size() for net in self.family.nets.values()
                          for t in (*net.parameters(), *net.buffers()))
        with_optimizer = 3 * state_bytes + (state_bytes if self.family.ema is not None else 0)
        return (self.cfg.train.keep_ckpts + 1) * with_optimizer + (64 << 20)

    def real_batch(self, step: int) -> torch.Tensor:
        """uint8 NHWC images of this step's batch (this rank's shard); gathered on the GPU when the
        prepared array lives there."""
        first, end = self.family.batches_before(step), self.family.batches_before(step + 1)
        idx = np.concatenate([self.stream.indices(k) for k in range(first, end)])
        if self._device_images is not None:
            return self._device_images[torch.from_numpy(idx).to(self.device, non_blocking=True)]
        return self.dataset.batch(idx)

    def images_seen(self, step: int | None = None) -> int:
        """Real images all ranks have drawn before `step` (default: the current step)."""
        step = self.step if step is None else step
        return self.family.batches_before(step) * self.cfg.train.batch * self.world.size

    def seconds(self) -> dict[str, float] | None:
        """Wall and CPU seconds (this process's CPU time over all its threads) that training this run
        has taken so far, over every session: each checkpoint records them, a resume continues from
        its checkpoint's (work lost after it does not count; work redone after a roll-back does).
        None when the run resumed from a checkpoint that predates the record."""
        if self.spent is None or self._clock is None:
            return None if self.spent is None else dict(self.spent)
        wall, cpu = self._clock
        return {"wall": round(self.spent["wall"] + time.monotonic() - wall, 3),
                "cpu": round(self.spent["cpu"] + time.process_time() - cpu, 3)}

    # --- outputs --------------------------------------------------------------------------------------
    def sample_grid(self, tb: TensorBoard | None = None) -> Path:
        """Grid of the fixed codes: PNG (small images enlarged to 64 px for viewing) and TensorBoard."""
        images = to_uint8(self.family.generate(self.fixed_z))
        k = max(1, 64 // images.shape[1])
        g = grid(images.repeat(k, axis=1).repeat(k, axis=2))
        path = save_png(g, self.run_dir / "samples" / f"step-{self.step:08d}.png")
        save_png(g, self.run_dir / "samples" / "latest.png")
        if tb:
            tb.image("samples", self.step, grid(images))
        if self.family.can_reconstruct:  # families with an encoder: originals beside reconstructions
            real = self.dataset.images[:min(32, len(self.dataset))]
            x = to_float(torch.from_numpy(np.ascontiguousarray(real)), self.device, self.cfg.train.channels_last)
            pairs = np.stack([real, to_uint8(self.family.reconstruct(x))], 1).reshape(-1, *real.shape[1:])
            pairs = pairs.repeat(k, axis=1).repeat(k, axis=2)
            save_png(grid(pairs, nrow=16), self.run_dir / "samples" / "reconstructions-latest.png")
        return path

    def plot(self) -> list[Path]:
        """plots/: each group of logged metrics against the step, and the convergence figure."""
        self._plotted = (self.step, time.monotonic())
        metric = self.cfg.train.metric
        groups = dict(self.family.plots, **({"metric": [metric, metric + "_raw"]} if metric else {}),
                      **({"augment": ["aug_p", "ada_r"]} if self.family.diffaug else {}),
                      gradients=["grad_norm_" + name for name in self.family.opts])
        title = f"{self.cfg.preset} on {self.dataset.name}"
        records = self.metrics.read()
        written = plot_metrics(records, groups, self.run_dir / "plots", title=title)
        if self.family.convergence:
            written.append(plot_convergence(records, self.family.convergence, self.run_dir / "samples",
                                            self.run_dir / "plots" / f"{self.family.convergence}-thumbnails.png",
                                            title=title))
        return written

    def evaluate(self, tb: TensorBoard | None = None) -> dict:
        """train.metric of the current generator; keeps checkpoints/best when it improves."""
        from ..metrics.registry import evaluate_many, load_features, parse_metric
        t, world = self.cfg.train, self.world
        if self._features is None:
            self._features = load_features(parse_metric(t.metric), None, t.metric_features or None, t.metric_ref)

        def value_of(use_ema: bool) -> float | None:  # (None on ranks other than 0)
            # never the training generator; under torchrun each rank makes its own share of the images
            gen = torch.Generator(self.device).manual_seed(t.seed + 2 + 7919 * world.rank)
            self.family.use_ema, before = use_ema, self.family.use_ema
            try:
                results = evaluate_many([t.metric], lambda n: self.family.generate(self.family.sample_z(n, gen)),
                                        t.metric_ref, feats=self._features, device=self.device, world=world)
                return results[0]["value"] if results else None
            finally:
                self.family.use_ema = before

        value = value_of(True)
        raw = value_of(False) if self.family.ema is not None and t.metric_raw else None
        if not world.main:
            return {}
        if self.best is None or value < self.best:
            self.best = value
            save_checkpoint(self.run_dir / "checkpoints" / "best", self.step, self.state(),
                            {"config": self.cfg.to_dict(), "metric": t.metric, "value": value}, keep=1)
        record = {"step": self.step, t.metric: value, "best_" + t.metric: self.best}
        if raw is not None:  # the generator itself, next to its moving average
            record[t.metric + "_raw"] = raw
        self.metrics.append(record)
        if tb:
            tb.scalars(self.step, {k: v for k, v in record.items() if k.startswith(t.metric)})
        return record

    # --- the loop -------------------------------------------------------------------------------------
    def install_step_hooks(self) -> None:
        """What happens to the gradients before every optimizer step (Family.apply): the mean over
        torchrun ranks, clipping to train.grad_clip, and the norm, which is logged as grad_norm_<net>
        and checked with the losses for non-finite values."""
        world, clip, hooks = self.world, self.cfg.train.grad_clip, self.family.step_hooks
        self.grad_norms: dict[str, torch.Tensor] = {}
        if world.active:
            hooks.append(lambda name, params: ddp.average_gradients(params, world))

        def watch(name: str, params: list[torch.Tensor]) -> None:
            grads = [p.grad for p in params if p.grad is not None]
            if not grads:
                return
            if clip > 0:
                norm = torch.nn.utils.clip_grad_norm_(params, clip)
            else:
                norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)).float())
            self.grad_norms["grad_norm_" + name] = norm.detach()
        hooks.append(watch)

    def _on_signal(self, signum, frame):
        self._stop_signal = signum

    def run(self) -> dict:
        """Train until train.steps (or a stop); returns the last logged metrics."""
        t = self.cfg.train
        self._clock = (time.monotonic(), time.process_time())
        self._plotted = (self._plotted[0], self._clock[0])
        try:
            window = _Window(self)  # what the loop carries between steps: sums, timers, the progress bar
            old_handlers = ({s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
                            if threading.current_thread() is threading.main_thread() else {})
            try:
                if self.step == 0 and self.world.main:
                    self.sample_grid(window.tb)
                while self.step < t.steps and not self.stopping(window):
                    out = self.train_step()
                    if out is None or not self.log(window, out) or not self.write_outputs(window):
                        window.restart(self.images_seen())  # rolled back to a checkpoint: the interval starts again
            finally:
                window.bar.close()
                for s, h in old_handlers.items():
                    signal.signal(s, h)
            return self.finish(window)
        finally:
            self.spent, self._clock = self.seconds(), None

    def stopping(self, window: "_Window") -> bool:
        """A signal or train.max_minutes; under torchrun a stop on any process stops all at the same step."""
        stop = self._stop_signal is not None or time.monotonic() > window.deadline
        if not self.world.active:
            return stop
        if self.device.type == "cuda" and self.step % self.cfg.train.log_every:
            return False  # agreeing is a host sync: on GPUs only at log steps
        return ddp.any_rank(stop, self.world, self.device)

    def train_step(self) -> dict | None:
        """One batch through the family, then the state that follows the weights (EMA, ADA's p, the
        plateau watch); the step's detached metrics, or None after a non-finite value and a roll-back."""
        t, world = self.cfg.train, self.world
        self.tick_clock()
        if self.lr_schedule() != self._schedule:
            at = self.schedule_step()
            moved = self.rampdown(at) != self.rampdown(self.step)  # the clock, not the step, moved the ramp
            if moved and not self._clock_led and world.main:
                log.info("step %d: train.max_minutes=%g will stop this run before step %d, so the rates' ramp "
                         "down follows the time used (now where step %d puts it; train.schedule_clock)",
                         self.step, t.max_minutes, t.steps, at)
            self._clock_led = self._clock_led or moved
            self.apply_lr()
        real = to_float(self.real_batch(self.step), self.device, t.channels_last)
        if self.cfg.augment.flip or self.cfg.augment.rot90 or self.cfg.augment.hsv:
            real = augment(real, self.cfg.augment, self.gen)
        self.family.at_step(self.step)
        out = self.family.step(real, self.gen)
        out.update(self.family.augment_metrics(), **self.grad_norms)
        if world.active:  # BatchNorm statistics and k_t: the mean over ranks
            ddp.average_tensors(self.shared_state, world)
        # every step on CPU (a cheap check); at log steps on GPUs (a check is a host sync)
        if self.device.type == "cpu" or (self.step + 1) % t.log_every == 0:
            bad = [k for k, v in out.items() if not torch.isfinite(v).all()]
            if world.active:
                bad = ["loss"] if ddp.any_rank(bool(bad), world, self.device) else []
            if bad:
                self.rollback(", ".join(bad), at_step=self.step + 1)
                return None
        self.family.update_ema(self.step)
        every = self.cfg.augment.ada_every
        if self.family.ada.adaptive and (self.step + 1) % every == 0:
            if world.active:  # every rank's signs count, and all keep the same p
                ddp.average_tensors([self.family.ada.sign_sum, self.family.ada.count], world)
            self.family.ada.adjust(self.images_seen(self.step + 1) - self.images_seen(self.step + 1 - every))
        self.step += 1
        self.watch_plateau(out)
        return out

    def log(self, window: "_Window", out: dict) -> bool:
        """Add the step to the interval; at log steps write its means, images/s and MFU. False after a
        roll-back (a non-finite mean, caught here on GPUs between checks)."""
        t, world = self.cfg.train, self.world
        window.add(out)
        if self.step % t.log_every and self.step != t.steps:
            return True
        now = time.perf_counter()
        sums = ddp.mean_over_ranks(window.sums, world) if world.active else window.sums
        values = {k: (v / window.n).item() for k, v in sums.items()}
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            self.rollback(", ".join(bad))
            return False
        seconds = now - window.t_start
        images = self.images_seen() - window.images0
        values["images_per_s"] = ips = images / seconds
        # FLOPs counted for an ordinary step, scaled by the images drawn (a critic burst's G update is
        # counted as if there were one per n_critic critic updates)
        ordinary = images / (t.batch * self.family.batches_per_step * world.size)
        values["mfu"] = window.flops * ordinary / seconds / window.peak  # per process
        window.last = {"step": self.step, "images": self.images_seen(), **values}
        if world.main:
            self.metrics.append(window.last)
            window.tb.scalars(self.step, values)
        window.bar.set_postfix_str(" ".join(f"{k}={v:.3g}" for k, v in values.items()
                                            if k not in ("images_per_s", "mfu"))
                                   + f" img/s={ips:.0f} mfu={100 * values['mfu']:.1f}%")
        window.restart(self.images_seen())
        return True

    def write_outputs(self, window: "_Window") -> bool:
        """Sample grids, the in-training metric and checkpoints when due (their time does not count
        against images/s). False after a roll-back (non-finite weights are never checkpointed)."""
        t, busy = self.cfg.train, False
        if self.step % t.sample_every == 0 and self.world.main:
            self.sample_grid(window.tb)
            busy = True
        if t.metric and self.step % t.metric_every == 0:  # every rank generates and extracts its share
            self.evaluate(window.tb)
            busy = True
        if self.step % t.ckpt_every == 0:
            if not self.weights_finite():
                self.rollback("weights")
                return False
            self.checkpoint()
            busy = True
        if busy:
            window.t_start = time.perf_counter()
        return True

    def finish(self, window: "_Window") -> dict:
        """The last grid and checkpoint, the reason for an early stop, and (torchrun) the ranks' agreement."""
        t, world, last = self.cfg.train, self.world, window.last
        if self.step % t.sample_every and world.main:
            self.sample_grid(window.tb)
        if self.step % t.ckpt_every or not list_checkpoints(self.run_dir / "checkpoints"):
            self.checkpoint()
        if world.main and self._plotted[0] != self.step:
            self.plot()
        if window.tb:
            window.tb.close()
        spent = self.seconds()
        if self.step < t.steps and self._stop_signal is None and world.main:
            log.info("train.max_minutes=%g reached at step %d%s; continue with: gankit train --resume %s "
                     "--set train.max_minutes=<a larger total, or 0 for no limit>", t.max_minutes, self.step,
                     "" if spent is None else f" ({spent['wall'] / 60:.1f} minutes over this run's sessions)",
                     self.run_dir)
        if self._stop_signal is not None and world.main:
            log.info("stopped by signal %s at step %d; continue with: gankit train --resume %s",
                     self._stop_signal, self.step, self.run_dir)
        last.update(flops_per_step=window.flops, peak_flops=window.peak, peak_source=window.peak_how)
        if spent is not None:
            last.update(train_minutes=spent["wall"] / 60, train_cpu_minutes=spent["cpu"] / 60)
        if world.active:
            last["processes"] = world.size
            last["ranks_identical"] = ddp.digests_agree(self.family.nets, world)
            if world.main and not last["ranks_identical"]:
                log.warning("the processes' weights differ (please report this)")
        return last

    @property
    def shared_state(self) -> list[torch.Tensor]:
        """Tensors every rank must hold alike besides weights: BatchNorm statistics, k_t."""
        return ddp.buffers(self.family.nets) + [v for v in self.family.extra_state().values() if torch.is_tensor(v)]


class _Window:
    """What one `Trainer.run` carries between steps: the log interval's sums and timer, the deadline,
    TensorBoard, the progress bar, FLOPs and the peak for MFU, and the last logged record."""

    def __init__(self, trainer: Trainer):
        t = trainer.cfg.train
        if trainer.world.main:
            check_writable(trainer.run_dir, trainer.disk_needed())
        self.tb = TensorBoard(trainer.run_dir / "tensorboard", purge_step=trainer.step or None) \
            if trainer.world.main else None
        self.flops = step_flops(trainer.family, t.batch, trainer.cfg.model.res)
        self.peak, self.peak_how = peak_flops(trainer.device, trainer.precision or torch.float32)
        self.bar = tqdm(total=t.steps, initial=trainer.step, desc=f"{trainer.cfg.preset}", unit="step",
                        disable=not trainer.progress, dynamic_ncols=True, mininterval=1.0)
        # train.max_minutes bounds the run's whole training time, over every session, as train.steps does
        # its steps (when a checkpoint it resumed from predates the record: this session's)
        before = trainer.spent["wall"] if trainer.spent else 0.0
        self.deadline = time.monotonic() + 60 * t.max_minutes - before if t.max_minutes else math.inf
        self.last: dict = {}
        self.restart(trainer.images_seen())

    def restart(self, images: int) -> None:
        """A new interval, from `images` real images drawn."""
        self.sums: dict[str, torch.Tensor] = {}
        self.n = 0
        self.images0 = images
        self.t_start = time.perf_counter()

    def add(self, out: dict) -> None:
        for k, v in out.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
        self.n += 1
        self.bar.update(1)

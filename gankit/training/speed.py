"""Speed accounting: FLOPs of one training step and the machine's peak, for model-FLOPs utilisation."""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..env import cache_dir, cpu_name

log = logging.getLogger(__name__)

# dense bf16 tensor-core peaks (FLOP/s) of common GPUs, from their data sheets
GPU_PEAKS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12,
             "RTX 4090": 165e12, "RTX 3090": 71e12, "V100": 125e12, "T4": 65e12}


def peak_flops(device: torch.device, dtype: torch.dtype) -> tuple[float, str]:
    """(FLOP/s, how it was found): a data-sheet figure for known GPUs, else a measured large matmul, cached."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, value in GPU_PEAKS.items():
            if key in name:
                return (value if dtype == torch.bfloat16 else value / 2), f"{name} data sheet"
    if device.type == "cpu":  # the kernels' ISA is part of the key: a capped run has another peak
        isa = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL"
        where = f"{cpu_name()}|{torch.backends.cpu.get_cpu_capability()}|{isa}"
    else:
        where = torch.cuda.get_device_name(device)
    key = f"{where}|{dtype}|{torch.get_num_threads()}"
    cache = cache_dir() / "peak_flops.json"
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known:
        # square matmuls doubling from 256 until one takes over 0.1 s, at most 2048: 2048 on any CPU
        # with native kernels for the dtype, smaller where it is emulated (bf16 on AVX2 runs ~0.1
        # GFLOP/s, where 2048^3 would take minutes)
        n = 256
        while True:
            a = torch.randn(n, n, device=device, dtype=dtype)
            b = torch.randn(n, n, device=device, dtype=dtype)
            t0 = time.perf_counter()
            a @ b
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if n >= 2048 or time.perf_counter() - t0 > 0.1:
                break
            n *= 2
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 0.5:
            a @ b
            reps += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        known[key] = 2 * n ** 3 * reps / (time.perf_counter() - t0)
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(known, indent=1))
        except OSError:
            pass
    return known[key], "measured square matmul"


def step_flops(family, batch: int, res: int) -> float:
    """FLOPs of one training step at `batch`, counted on an eager copy of the family at batch 2 and scaled."""
    fast, family.fast = family.fast, dict(family.nets)  # copy and count the eager modules, never a compiled graph
    try:
        probe = copy.deepcopy(family)
    finally:
        family.fast = fast
    # the probe's step at batch 2: families that split a step's images by train.batch (WGAN) see it too
    probe.cfg = dataclasses.replace(probe.cfg, train=dataclasses.replace(probe.cfg.train, batch=2))
    small = 2 * probe.batches_per_step
    x = torch.zeros(small, 3, res, res, device=family.device)
    counter = FlopCounterMode(display=False)
    # Only the total is needed. The per-module tracker's backward hooks break under autograd.grad
    # (WGAN-GP's double backward), so count everything under one global parent instead.
    counter.mod_tracker = _GlobalOnly()
    try:
        with counter:
            probe.step(x, torch.Generator(family.device).manual_seed(0))
    except Exception as e:  # an op the counter cannot follow: report no MFU rather than fail the run
        log.warning("FLOP counting failed (%s: %s); MFU not reported", type(e).__name__, e)
        return float("nan")
    return counter.get_total_flops() * batch / 2


class _GlobalOnly:
    """Stands in for FlopCounterMode's module tracker: every op counts toward 'Global'."""
    parents = {"Global"}
    is_bw = False

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False

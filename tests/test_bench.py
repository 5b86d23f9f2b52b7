"""The benchmark runs and its records add up (its numbers live in BENCHMARKS.md, never in a test)."""
import json
import statistics

import pytest
import torch

from gankit import bench
from gankit.config import apply_overrides
from gankit.env import native_bf16, resolve_precision

WIDTH, BATCH = 16, 16


def mfu_bounded(preset: str) -> bool:
    """Whether gankit's MFU must be at most 1: in fp32, or in bf16 where it is native. Where bf16 is
    emulated (AVX2), its "peak" is timed on an emulated matmul, slower than the convolutions: MFU 2.1 to
    2.3 measured on a Zen 3 with GANKIT_PRECISION=bf16."""
    cpu = torch.device("cpu")
    return resolve_precision(cpu, bench.load_preset(preset).train.precision) is None or native_bf16(cpu)


def span(x: float, digits: int) -> tuple[float, float]:
    """The interval of values that round to x at `digits` decimals (the records are rounded)."""
    h = 0.5 * 10 ** -digits + 1e-12
    return x - h, x + h


def consistent(value: float, digits: int, lo: float, hi: float) -> bool:
    """A rounded record `value` could be the rounding of a number in [lo, hi]."""
    v_lo, v_hi = span(value, digits)
    return v_lo <= hi and v_hi >= lo


@pytest.fixture
def counted(monkeypatch):
    """The bench's presets at width 16, batch 16 (the same code paths, in a fraction of the time), and
    counts of the training steps each loop really runs: gankit's family.step calls, the plain loop's
    generator forwards (one per step)."""
    calls = {"gankit": 0, "plain": 0}
    real_preset, real_build, real_plain_g = bench.load_preset, bench.build_family, bench.plain_generator
    monkeypatch.setattr(bench, "load_preset", lambda name: apply_overrides(
        real_preset(name), [f"model.width={WIDTH}", f"train.batch={BATCH}"]))

    def build_family(cfg, device, precision):
        fam = real_build(cfg, device, precision)
        cls_step = type(fam).step

        def step(self, *args, **kwargs):  # on the class: FLOP counting steps a deep copy, not counted
            calls["gankit"] += self is fam
            return cls_step(self, *args, **kwargs)

        monkeypatch.setattr(type(fam), "step", step)
        return fam

    def plain_generator(*args, **kwargs):
        g = real_plain_g(*args, **kwargs)
        g.register_forward_hook(lambda *_: calls.__setitem__("plain", calls["plain"] + 1))
        return g

    monkeypatch.setattr(bench, "build_family", build_family)
    monkeypatch.setattr(bench, "plain_generator", plain_generator)
    return calls


def test_bench_records_add_up(tmp_path, counted):
    warmup, steps = 1, 3
    out = bench.main(["--preset", "dcgan-64-cpu", "--steps", str(steps), "--warmup", str(warmup), "--skip-jpeg",
                      "--json", str(tmp_path / "b.json")])
    assert json.loads((tmp_path / "b.json").read_text()) == out
    assert set(out) == {"date", "preset", "batch", "machine", "torch", "gankit", "plain", "step_gflop"}  # no jpeg loop
    assert out["preset"] == "dcgan-64-cpu" and out["batch"] == BATCH and out["torch"] == torch.__version__
    assert out["machine"].endswith(f", {torch.get_num_threads()} threads")
    assert counted == {"gankit": warmup + steps, "plain": warmup + steps}  # both loops trained, warm-up untimed
    for name in ("gankit", "plain"):
        r = out[name]
        assert len(r["times"]) == steps and min(r["times"]) > 0, r
        assert r["s_per_step"] == statistics.median(r["times"])  # the median step (odd count: one of them)
        s_lo, s_hi = span(r["s_per_step"], 3)
        assert consistent(r["images_per_s"], 2, BATCH / s_hi, BATCH / s_lo), r  # one batch a step
        assert r["mfu"] > 0 and (r["mfu"] <= 1 or (name == "gankit" and not mfu_bounded("dcgan-64-cpu"))), r
    assert out["plain"]["speedup"] == 1.0
    (a_lo, a_hi), (b_lo, b_hi) = span(out["gankit"]["images_per_s"], 2), span(out["plain"]["images_per_s"], 2)
    assert consistent(out["gankit"]["speedup"], 2, a_lo / b_hi, a_hi / b_lo), out  # against the plain loop
    # MFU: the step's FLOPs over its time over the machine's fp32 peak (cached: the number the bench used)
    peak = bench.peak_flops(torch.device("cpu"), torch.float32)[0]
    assert out["step_gflop"] > 0
    (g_lo, g_hi), (s_lo, s_hi) = span(out["step_gflop"], 1), span(out["plain"]["s_per_step"], 3)
    assert consistent(out["plain"]["mfu"], 3, g_lo * 1e9 / s_hi / peak, g_hi * 1e9 / s_lo / peak), out["plain"]
    if resolve_precision(torch.device("cpu"), bench.load_preset("dcgan-64-cpu").train.precision) is None:
        # both loops in fp32: the same peak, so the MFU ratio is the speed-up
        (a_lo, a_hi), (b_lo, b_hi) = span(out["gankit"]["mfu"], 3), span(out["plain"]["mfu"], 3)
        assert consistent(out["gankit"]["speedup"], 2, a_lo / b_hi, a_hi / b_lo), out


def test_throughput_records_add_up(tmp_path, counted):
    out = bench.main(["--throughput", "vae-64-cpu", "--steps", "2", "--warmup", "1", "--json", str(tmp_path / "t.json")])
    assert json.loads((tmp_path / "t.json").read_text()) == out
    r = out["vae-64-cpu"]
    assert set(r) == {"batch", "images_per_s", "s_per_step", "mfu"}
    assert counted["gankit"] == 3 and r["batch"] == BATCH  # the VAE consumes one batch a step
    s_lo, s_hi = span(r["s_per_step"], 3)
    assert consistent(r["images_per_s"], 2, r["batch"] / s_hi, r["batch"] / s_lo), r
    assert r["mfu"] > 0 and (r["mfu"] <= 1 or not mfu_bounded("vae-64-cpu")), r


def test_throughput_honours_compile_from_set(monkeypatch, counted):
    """`--throughput P --set train.compile=true` measures the compiled networks, as --set promises."""
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda net, *a, **k: compiled.append(type(net).__name__) or net)
    bench.main(["--throughput", "vae-64-cpu", "--steps", "1", "--warmup", "1"])
    assert compiled == []
    bench.main(["--throughput", "vae-64-cpu", "--steps", "1", "--warmup", "1", "--set", "train.compile=true"])
    assert compiled, "train.compile=true was dropped by the bench"

"""The numeric environment: GANKIT_PRECISION honoured by every tool, bf16 detection under ISA caps."""
import pytest
import torch

import gankit.env as env
from gankit.cli import main
from gankit.errors import GankitError
from tests.conftest import tiny


@pytest.fixture
def native(monkeypatch):
    """Pretend the CPU's bf16 is native (True) or not (False), whatever this machine is."""
    def set_native(value: bool):
        monkeypatch.setattr(env, "cpu_supports_bf16", lambda: value)
    return set_native


@pytest.mark.parametrize("setting,native_bf16,training,tools", [
    ("auto", True, torch.bfloat16, None), ("auto", False, None, None),
    ("fp32", True, None, None), ("bf16", False, torch.bfloat16, torch.bfloat16)])
def test_precision_setting_decides_what_auto_means(setting, native_bf16, training, tools, native, monkeypatch):
    monkeypatch.setenv("GANKIT_PRECISION", setting)
    native(native_bf16)
    assert env.resolve_precision("cpu") is training  # training: train.precision=auto
    assert env.resolve_precision("cpu", auto="fp32") is tools  # metrics, studio, explorer
    # an explicit config value wins over the environment
    assert env.resolve_precision("cpu", "fp32") is None and env.resolve_precision("cpu", "bf16") is torch.bfloat16


def test_a_bad_setting_is_one_line_naming_it(monkeypatch, toy32, tmp_path, capsys):
    monkeypatch.setenv("GANKIT_PRECISION", "fp8")
    with pytest.raises(GankitError, match="GANKIT_PRECISION='fp8'"):
        env.resolve_precision("cpu")
    assert main(["train", "--preset", "dcgan-32-cpu", "--data", str(toy32), "--runs", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "GANKIT_PRECISION" in err and "\n" not in err


@pytest.mark.parametrize("variable,value,capped", [
    ("ATEN_CPU_CAPABILITY", "avx2", True), ("ATEN_CPU_CAPABILITY", "default", True),
    ("ONEDNN_MAX_CPU_ISA", "AVX2", True), ("DNNL_MAX_CPU_ISA", "avx512_core", True),
    ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX", False), ("ONEDNN_MAX_CPU_ISA", "ALL", False),
    ("ATEN_CPU_CAPABILITY", "avx512", False)])
def test_isa_caps_turn_native_bf16_off(variable, value, capped, monkeypatch):
    for name in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)  # as on a bf16 CPU
    assert env.cpu_supports_bf16()
    monkeypatch.setenv(variable, value)
    assert env.cpu_supports_bf16() is (not capped)
    # and so the other numeric path of a capped machine is forced bf16, of an uncapped one fp32 on AVX2
    other = env.other_numeric_path()
    assert other["GANKIT_PRECISION"] == ("bf16" if capped else "fp32")
    assert ("ATEN_CPU_CAPABILITY" in other) is (not capped)


def test_every_tool_follows_the_setting(toy32, tmp_path, monkeypatch, native):
    """Training, run loading (studio, explorer, eval), metrics' feature extraction and the bench."""
    from gankit.bench import bench_gankit
    from gankit.metrics.featnet import train_feature_net
    from gankit.metrics.registry import metric_bf16
    from gankit.run import load_run
    from gankit.training import Trainer
    from gankit.data import prepare
    small = tmp_path / "toy40"
    prepare("toyfaces", [], 32, small, count=40, progress=False, workers=1)
    native(False)
    for setting, dtype in (("bf16", torch.bfloat16), ("fp32", None)):
        monkeypatch.setenv("GANKIT_PRECISION", setting)
        t = Trainer.new(tiny("dcgan-32-cpu", "train.steps=1"), str(toy32), tmp_path / setting, progress=False)
        assert t.precision is dtype and t.family.precision is dtype
        t.run()
        assert load_run(t.run_dir)[0].precision is dtype
        assert metric_bf16(None) is (dtype is not None) and metric_bf16(False) is False
        images = torch.zeros(16, 64, 64, 3, dtype=torch.uint8).numpy()
        assert bench_gankit("dcgan-64-cpu", images, warmup=0, steps=0, compile=False)[2] is dtype
        report = train_feature_net(small, tmp_path / f"features-{setting}", epochs=1, batch=16, progress=False)
        assert report["precision"] == setting

"""The numeric environment: which precision a network runs in, and what this CPU can do natively.

`GANKIT_PRECISION` (auto | fp32 | bf16) decides what `auto` means everywhere a network runs:
training (`train.precision=auto`), the feature network, eval, the latent studio, the explorer and
the bench. Unset or `auto`, training takes bf16 where the hardware runs it natively and the tools
whose numbers should be exact (metrics, studio, explorer) take fp32.

bf16 counts as native on a CPU only when its dot products are (AVX512-BF16 or AMX) *and* neither
`ATEN_CPU_CAPABILITY` nor oneDNN's ISA cap (`ONEDNN_MAX_CPU_ISA` / `DNNL_MAX_CPU_ISA`) holds
PyTorch below them, so one machine can run another machine's numeric path:

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 gankit train ...   # a Zen 3's fp32 path on a Zen 4
    GANKIT_PRECISION=bf16 gankit train ...                               # bf16 (emulated) on a Zen 3
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from .errors import GankitError

PRECISIONS = ("auto", "fp32", "bf16")
# PyTorch kernels below AVX-512 have no bf16 dot products
_ATEN_NO_BF16 = {"default", "avx2"}


def precision_setting() -> str:
    """The GANKIT_PRECISION environment variable (auto when unset)."""
    value = os.environ.get("GANKIT_PRECISION", "auto").strip().lower() or "auto"
    if value not in PRECISIONS:
        raise GankitError(f"GANKIT_PRECISION={value!r}: must be one of {', '.join(PRECISIONS)}")
    return value


def _onednn_capped_below_bf16() -> bool:
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL").upper()
    return cap != "ALL" and not any(tag in cap for tag in ("BF16", "AMX", "FP16", "AVX10"))


def cpu_supports_bf16() -> bool:
    """True where the CPU has native bf16 dot products (AVX512-BF16 or AMX) and nothing caps them off."""
    if os.environ.get("ATEN_CPU_CAPABILITY", "").strip().lower() in _ATEN_NO_BF16 or _onednn_capped_below_bf16():
        return False
    try:  # bf16 dot products: AVX512-BF16 or AMX (oneDNN's own check also says yes on plain AVX-512,
        # where it emulates bf16 slowly)
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except Exception:
        try:
            flags = Path("/proc/cpuinfo").read_text()
            return "avx512_bf16" in flags or "amx_bf16" in flags
        except OSError:
            return False


def native_bf16(device: torch.device) -> bool:
    return torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_supports_bf16()


def resolve_precision(device: torch.device | str, requested: str = "auto", auto: str = "native") -> torch.dtype | None:
    """torch.bfloat16 (autocast) or None (fp32) for a network on `device`.

    `requested` fp32 or bf16 is taken as it is. `auto` follows GANKIT_PRECISION when that says fp32
    or bf16, else `auto`: 'native' (bf16 where the hardware runs it natively: training) or 'fp32'
    (tools whose numbers should be exact).
    """
    device = torch.device(device)
    if requested not in PRECISIONS:
        raise GankitError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested == "auto":
        requested = precision_setting()
    if requested == "auto":
        requested = "bf16" if auto == "native" and native_bf16(device) else "fp32"
    return torch.bfloat16 if requested == "bf16" else None


def precision_name(dtype: torch.dtype | None) -> str:
    return "bf16" if dtype == torch.bfloat16 else "fp32"


def other_numeric_path() -> dict[str, str]:
    """The environment that runs this machine's other numeric path: fp32 on AVX2 kernels where bf16
    is native, forced (emulated) bf16 where it is not. `make test-other` runs the tests under it."""
    if cpu_supports_bf16():
        return {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "GANKIT_PRECISION": "fp32"}
    return {"GANKIT_PRECISION": "bf16"}


def cache_dir() -> Path:
    return Path(os.environ.get("GANKIT_CACHE", Path.home() / ".cache" / "gankit"))


def cpu_name() -> str:
    """The CPU's model name with its family/model numbers and its widest matrix ISA, e.g.
    "AMD EPYC (family 25 model 1, avx2)": virtual machines often report a bare "AMD EPYC", and the
    ISA (avx2 | avx512 | avx512_bf16 | amx) decides what bf16 costs."""
    try:
        info = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if ":" in line:
                key, value = (x.strip() for x in line.split(":", 1))
                if key in info:
                    break  # the first processor's block is enough
                info[key] = value
        flags = set(info.get("flags", "").split())
        isa = next((name for flag, name in (("amx_bf16", "amx"), ("avx512_bf16", "avx512_bf16"),
                                            ("avx512f", "avx512"), ("avx2", "avx2")) if flag in flags), "")
        detail = ", ".join(x for x in (f"family {info['cpu family']} model {info['model']}"
                                       if "cpu family" in info and "model" in info else "", isa) if x)
        if "model name" in info:
            return info["model name"] + (f" ({detail})" if detail else "")
    except OSError:
        pass
    return platform.processor() or "cpu"


__all__ = ["PRECISIONS", "precision_setting", "cpu_supports_bf16", "native_bf16", "resolve_precision",
           "precision_name", "other_numeric_path", "cache_dir", "cpu_name"]

if __name__ == "__main__":  # python -m gankit.env [--other-path]: KEY=VALUE words for `env`
    import sys
    if sys.argv[1:] == ["--other-path"]:
        print(" ".join(f"{k}={v}" for k, v in other_numeric_path().items()))
    else:
        print(f"gankit numeric environment: {torch.get_num_threads()} threads, kernels "
              f"{torch.backends.cpu.get_cpu_capability()}, native bf16 {cpu_supports_bf16()}, GANKIT_PRECISION="
              f"{precision_setting()}: training in {precision_name(resolve_precision('cpu'))}, tools in "
              f"{precision_name(resolve_precision('cpu', auto='fp32'))}")


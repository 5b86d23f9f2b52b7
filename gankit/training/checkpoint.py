"""Checkpoints without pickle: tensors in safetensors, everything else in JSON, both written atomically.

A checkpoint `ckpt-00001000` is two files. The .safetensors holds every tensor of the state (weights,
optimizer moments, RNG states); the .json holds the step, the config, the structure of the state
with each tensor replaced by its name, and the sha256 of the .safetensors. The JSON is written
last, so its presence marks a complete checkpoint; the checksum catches a damaged tensor file.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..errors import GankitError

FORMAT = "gankit-ckpt-1"


def flatten(obj: Any, tensors: dict[str, torch.Tensor], prefix: str = "") -> Any:
    """JSON skeleton of a nested state; tensors move into `tensors` under dotted names."""
    if isinstance(obj, torch.Tensor):
        name = prefix or "root"
        tensors[name] = obj.detach().to("cpu", copy=True).contiguous()
        return {"T": name}
    if isinstance(obj, dict):  # key types (ints in optimizer state) are kept: items as pairs
        return {"D": [[k, flatten(v, tensors, f"{prefix}.{k}" if prefix else str(k))] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"L" if isinstance(obj, list) else "U":
                [flatten(v, tensors, f"{prefix}.{i}" if prefix else str(i)) for i, v in enumerate(obj)]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a value of type {type(obj).__name__} at {prefix or 'root'}")


def unflatten(skel: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(skel, dict):
        if "T" in skel:
            return tensors[skel["T"]]
        if "D" in skel:
            return {k: unflatten(v, tensors) for k, v in skel["D"]}
        if "L" in skel:
            return [unflatten(v, tensors) for v in skel["L"]]
        if "U" in skel:
            return tuple(unflatten(v, tensors) for v in skel["U"])
        raise ValueError(f"unknown node {list(skel)}")
    return skel


_passes: dict[str, int] = {}


def fault_point(name: str) -> None:
    """A hook for the reliability tests: with GANKIT_FAULT=<name>:<n> in the environment, this process
    kills itself with SIGKILL the n-th time it reaches `name` (a moment inside a checkpoint write)."""
    spec = os.environ.get("GANKIT_FAULT")
    if not spec or spec.partition(":")[0] != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] >= int(spec.partition(":")[2] or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace a small text file (config.json, run.json) so that a kill leaves the old or the new one."""
    _write_atomic(Path(path), text.encode())


def _write_atomic(path: Path, data: bytes, fault: str = "") -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if fault:
            fault_point(fault)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk or an error leaves no partial file behind
        raise


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(directory: str | Path, step: int, state: dict, info: dict, keep: int = 3) -> Path:
    """Write ckpt-<step>.{safetensors,json} atomically and keep only the newest `keep`. Returns the JSON path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = flatten(state, tensors)
    blob = st_save(tensors)
    stem = f"ckpt-{step:08d}"
    record = {"format": FORMAT, "step": step, "tensors": f"{stem}.safetensors",
              "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob), **info, "state": skeleton}
    try:
        _write_atomic(directory / f"{stem}.safetensors", blob, fault="ckpt-tensors-written")
        fault_point("ckpt-between-files")
        _write_atomic(directory / f"{stem}.json", json.dumps(record).encode(), fault="ckpt-json-written")
    except OSError as e:
        if not (directory / f"{stem}.json").exists():  # an orphan tensor file of this failed write
            (directory / f"{stem}.safetensors").unlink(missing_ok=True)
        previous = [p.name for p in list_checkpoints(directory) if p.stem != stem]
        raise GankitError(f"could not write checkpoint {directory / stem} ({e.strerror or e}); "
                          f"the previous one ({previous[-1] if previous else 'none'}) is intact") from None
    _fsync_dir(directory)
    for old in list_checkpoints(directory)[:-keep]:
        for p in (old, old.with_suffix(".safetensors")):
            p.unlink(missing_ok=True)
    return directory / f"{stem}.json"


def remove_stale_temporaries(directory: str | Path) -> int:
    """Delete temporary files a killed writer left behind; returns how many."""
    stale = list(Path(directory).glob(".ckpt-*.tmp-*")) if Path(directory).is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Complete checkpoints (their JSON files), oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("ckpt-*.json") if not p.name.startswith("."))


def newest_step(directory: str | Path) -> int | None:
    """The step of the newest complete checkpoint in `directory`, or None when there is none."""
    found = list_checkpoints(directory)
    return json.loads(found[-1].read_text()).get("step") if found else None


def read_checkpoint(json_path: str | Path) -> tuple[dict, dict]:
    """(state, record) of one checkpoint; GankitError if it is damaged or incomplete."""
    json_path = Path(json_path)
    try:
        record = json.loads(json_path.read_text())
        if not isinstance(record, dict):
            raise ValueError(f"expected a JSON object, got {type(record).__name__}")
        if record.get("format") != FORMAT:
            raise ValueError(f"format {record.get('format')!r}, expected {FORMAT}")
        blob = (json_path.parent / record["tensors"]).read_bytes()
        if hashlib.sha256(blob).hexdigest() != record["sha256"]:
            raise ValueError("checksum mismatch in its .safetensors file")
        state = unflatten(record.pop("state"), st_load(blob))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
        raise GankitError(f"checkpoint {json_path}: {type(e).__name__}: {e}") from None
    return state, record


def load_latest(directory: str | Path) -> tuple[dict, dict] | None:
    """The newest checkpoint that reads back intact, warning about any newer damaged one; None if none."""
    for json_path in reversed(list_checkpoints(directory)):
        try:
            return read_checkpoint(json_path)
        except GankitError as e:
            warnings.warn(f"skipping damaged checkpoint: {e}", stacklevel=2)
    return None

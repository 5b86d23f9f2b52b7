"""Checkpoints: no pickle, atomic, pruned, checksummed."""
import warnings

import pytest
import torch

from gankit.errors import GankitError
from gankit.training.checkpoint import flatten, list_checkpoints, load_latest, read_checkpoint, save_checkpoint, unflatten


def test_flatten_round_trip_keeps_key_types():
    state = {"opt": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(2, 2)}},
                     "param_groups": [{"lr": 1e-4, "betas": (0.5, 0.999), "params": [0], "fused": None}]},
             "k": 0.25, "name": "x"}
    tensors = {}
    back = unflatten(flatten(state, tensors), tensors)
    assert back["opt"]["param_groups"][0]["betas"] == (0.5, 0.999)
    assert 0 in back["opt"]["state"]
    assert torch.equal(back["opt"]["state"][0]["exp_avg"], state["opt"]["state"][0]["exp_avg"])


def test_keep_last_k_and_no_temporary_files(tmp_path):
    for step in range(1, 6):
        save_checkpoint(tmp_path, step, {"w": torch.full((3,), float(step))}, {"config": {}}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-00000004.json", "ckpt-00000005.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-00000004.json", "ckpt-00000004.safetensors",
                                                          "ckpt-00000005.json", "ckpt-00000005.safetensors"]
    state, record = load_latest(tmp_path)
    assert record["step"] == 5 and torch.equal(state["w"], torch.full((3,), 5.0))


def test_damaged_checkpoint_is_detected_and_previous_used(tmp_path):
    save_checkpoint(tmp_path, 1, {"w": torch.ones(100)}, {}, keep=3)
    save_checkpoint(tmp_path, 2, {"w": torch.ones(100) * 2}, {}, keep=3)
    blob = tmp_path / "ckpt-00000002.safetensors"
    data = bytearray(blob.read_bytes())
    data[-5] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(GankitError, match="checksum"):
        read_checkpoint(tmp_path / "ckpt-00000002.json")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        state, record = load_latest(tmp_path)
    assert record["step"] == 1 and any("damaged" in str(w.message) for w in caught)


def test_checkpoint_files_contain_no_pickle(tmp_path):
    save_checkpoint(tmp_path, 7, {"w": torch.ones(2)}, {}, keep=1)
    head = (tmp_path / "ckpt-00000007.safetensors").read_bytes()[:16]
    assert not head.startswith(b"\x80")  # pickle protocol marker; also not a zip (torch.save)
    assert not head.startswith(b"PK")

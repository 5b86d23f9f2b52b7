"""torchrun data parallelism on CPU with gloo: identical weights on every rank, resume with another world size."""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="torchrun with gloo is tested on Linux")


def torchrun(n: int, *args: str, cwd) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
           "-m", "gankit", "train", "--quiet", *args]
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    # stdout too: whether the run finished (its last JSON line) before a process failed
    assert done.returncode == 0, f"stdout:\n{done.stdout[-1500:]}\nstderr:\n{done.stderr[-3000:]}"
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, done.stdout  # rank 0 alone prints
    return json.loads(lines[0])


@pytest.mark.parametrize("preset", ["dcgan-32-cpu", "began-64-cpu"])
def test_two_gloo_processes_keep_identical_weights_and_resume(preset, toy32, tmp_path):
    tiny = ["--set", "model.res=32", "--set", "model.width=8", "--set", "train.batch=8", "--set", "log_every=2",
            "--set", "ckpt_every=4", "--set", "sample_every=4"]
    last = torchrun(2, "--preset", preset, "--data", str(toy32), "--runs", str(tmp_path), "--set", "train.steps=6",
                    *tiny, cwd=tmp_path)
    assert last["processes"] == 2 and last["ranks_identical"] is True
    assert last["step"] == 6 and last["images"] == 6 * 2 * 8  # one global batch = 2 shards of 8
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir() and p.name[:5].isdigit()]
    assert json.loads((run / "run.json").read_text())["processes"] == 2
    assert (run / "samples" / "latest.png").exists() and list((run / "checkpoints").glob("ckpt-*6.json"))
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # one writer: no duplicated records
    # resume with a different world size, then with two again
    from gankit.cli import main
    assert main(["train", "--resume", str(run), "--quiet", "--set", "train.steps=8"]) == 0
    last = torchrun(2, "--resume", str(run), "--set", "train.steps=10", cwd=tmp_path)
    assert last["step"] == 10 and last["ranks_identical"] is True


def test_in_training_metric_is_shared_across_ranks(featnet, toy32, tmp_path):
    """Every rank generates and scores half of the images; rank 0 gathers them and logs the metric once."""
    tiny = ["--set", "model.width=8", "--set", "train.batch=8", "--set", "log_every=2", "--set", "train.steps=4",
            "--set", "train.metric=fd-toyfaces-attr1k", "--set", f"train.metric_ref={toy32}",
            "--set", "train.metric_every=2", "--set", "train.ema=0.9"]
    last = torchrun(2, "--preset", "dcgan-32-cpu", "--data", str(toy32), "--runs", str(tmp_path), *tiny, cwd=tmp_path)
    assert last["ranks_identical"] is True and last["step"] == 4
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir() and p.name[:5].isdigit()]
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    scored = [r for r in recs if "fd-toyfaces-attr1k" in r]
    assert [r["step"] for r in scored] == [2, 4]  # once per evaluation: rank 0 writes
    assert all(r["fd-toyfaces-attr1k"] > 0 and r["fd-toyfaces-attr1k_raw"] > 0 for r in scored)
    assert list((run / "checkpoints" / "best").glob("ckpt-*.json"))


LEAVE = """
import logging, logging.handlers, sys
import torch.distributed as dist
from gankit.training import distributed as ddp
dist.init_process_group("gloo", init_method="file://{store}", rank=0, world_size=1)
log = logging.getLogger("gankit")  # a buffering handler: its record reaches the file only when flushed
log.addHandler(logging.handlers.MemoryHandler(1000, logging.CRITICAL, logging.FileHandler("{log}")))
log.setLevel(logging.INFO)
log.info("written before leave")
print("printed before leave", end="")
ddp.leave()
print(" and after")
sys.exit(3)
"""


def test_leave_flushes_output_and_exits_zero_without_teardown(tmp_path):
    log = tmp_path / "run.log"
    code = LEAVE.format(store=tmp_path / "store", log=log)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered, as a user's pipe is
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=dict(env, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == "printed before leave"  # piped stdout is block-buffered: lost without the flush
    assert "written before leave" in log.read_text()

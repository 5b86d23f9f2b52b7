"""Faults, bad input and untrusted files (RELIABILITY.md quotes the counts these tests print)."""
import io
import json
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tqdm import tqdm

from gankit.cli import main
from gankit.data import PreparedDataset, prepare
from gankit.errors import GankitError
from gankit.training import Trainer
from gankit.training.checkpoint import list_checkpoints, load_latest, read_checkpoint, save_checkpoint
from tests.conftest import tiny

TINY = ["--set", "model.width=8", "--set", "train.batch=8", "--set", "log_every=1", "--set", "ckpt_every=5",
        "--set", "sample_every=100000", "--set", "keep_ckpts=3"]


def _steps(run: Path) -> list[int]:
    out = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        try:
            out.append(json.loads(line)["step"])
        except (ValueError, KeyError):
            pass  # a line cut short by the kill
    return out


def _gankit_in_child(argv: list[str], out: str, env: dict[str, str]) -> None:
    """A forked process's `gankit <argv>`: `env` added to its environment, its output in `out`."""
    os.environ.update(env)
    fd = os.open(out, os.O_WRONLY | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    torch.set_num_threads(1)
    # tqdm's default lock is a multiprocessing semaphore, which the fork server's resource tracker would
    # report as leaked by every killed process; a thread lock does for one process
    tqdm.set_lock(threading.RLock())
    sys.exit(main(argv))


def _gankit_process(argv: list[str], out: Path, env: dict[str, str] | None = None):
    """`gankit <argv>` in a new process, started. Forked from multiprocessing's fork server with torch and
    gankit imported, so a process trains within a fraction of a second instead of the 3-4 s a new
    interpreter takes to import them: a killed process is still a whole training process (its own
    memory, files and exit status), and only the imports are shared."""
    import multiprocessing
    out.write_text("")  # there even when the process is killed before it starts
    ctx = multiprocessing.get_context("forkserver")
    # torch._dynamo: what torch imports when the first optimizer is made (1.5 s)
    ctx.set_forkserver_preload(["torch", "torch._dynamo", "gankit.cli", "gankit.training", __name__])
    proc = ctx.Process(target=_gankit_in_child, args=(argv, str(out), env or {}))
    proc.start()
    return proc


def _exitcode(proc, timeout: float = 120) -> int | None:
    """The process's exit status once it ends; one still running after `timeout` seconds is killed (so a
    hung trial leaves no process behind) and gives None."""
    proc.join(timeout)
    if proc.exitcode is None:
        proc.kill()
        proc.join()
        return None
    return proc.exitcode


def test_twenty_sigkills_at_random_moments_lose_at_most_one_checkpoint_interval(toy32, tmp_path):
    """SIGKILL a training process 20 times: at random times, and inside checkpoint writes (after the
    tensor file, between the two files, after the JSON's temporary). Every resume must start from the
    newest complete checkpoint, no checkpoint may be corrupt, and at most ckpt_every steps are lost."""
    rng = random.Random(20261123)
    base = ["train", "--quiet"]
    first = _gankit_process(base + ["--preset", "dcgan-32-cpu", "--data", str(toy32), "--runs", str(tmp_path / "runs"),
                                    "--set", "train.steps=10", *TINY], tmp_path / "first.out")
    assert _exitcode(first) == 0, (tmp_path / "first.out").read_text()[-2000:]
    (run,) = (tmp_path / "runs").iterdir()
    faults = ["time", "ckpt-tensors-written", "ckpt-between-files", "ckpt-json-written"]
    stats = {"trials": 0, "in_checkpoint_write": 0, "corrupt": 0, "max_lost_steps": 0, "resumed_from_newest": 0}
    for trial in range(20):
        newest = int(list_checkpoints(run / "checkpoints")[-1].stem.split("-")[1])
        fault = faults[trial % 4]
        env = {} if fault == "time" else {"GANKIT_FAULT": f"{fault}:{rng.randint(1, 3)}"}
        out = tmp_path / f"trial{trial}.out"
        proc = _gankit_process(base + ["--resume", str(run), "--set", "train.steps=1000000"], out, env)
        if fault == "time":
            time.sleep(rng.uniform(0.5, 3.0))
            os.kill(proc.pid, signal.SIGKILL)
        assert _exitcode(proc) == -signal.SIGKILL, out.read_text()[-2000:]
        text = out.read_text()
        if "resuming" in text:  # killed after start-up: it resumed from the newest complete checkpoint
            assert f"at step {newest}" in text, text
            stats["resumed_from_newest"] += 1
        ckpts = list_checkpoints(run / "checkpoints")
        for c in ckpts:  # every complete checkpoint reads back with a matching checksum
            try:
                read_checkpoint(c)
            except GankitError:
                stats["corrupt"] += 1
        done = max(_steps(run))
        kept = int(ckpts[-1].stem.split("-")[1])
        stats["max_lost_steps"] = max(stats["max_lost_steps"], done - kept)
        stats["in_checkpoint_write"] += fault != "time"
        stats["trials"] += 1
    # and the run still finishes cleanly, leaving no temporary files
    final = kept + 5
    done = _gankit_process(base + ["--resume", str(run), "--set", f"train.steps={final}"], tmp_path / "final.out")
    assert _exitcode(done) == 0, (tmp_path / "final.out").read_text()[-2000:]
    assert read_checkpoint(list_checkpoints(run / "checkpoints")[-1])[1]["step"] == final
    assert not list((run / "checkpoints").glob(".*tmp*"))
    print("kill trials:", json.dumps(stats))
    assert stats["corrupt"] == 0 and stats["max_lost_steps"] <= 5
    assert stats["resumed_from_newest"] >= 15  # most kills land after start-up


@pytest.mark.parametrize("damage", ["truncate", "flip-tensor-byte", "flip-json-byte", "delete-tensors",
                                    "empty-json", "wrong-format"])
def test_a_damaged_newest_checkpoint_is_detected_and_the_previous_used(tmp_path, damage):
    d = tmp_path / "ck"
    for step in (1, 2):
        save_checkpoint(d, step, {"w": torch.full((64,), float(step))}, {"note": step})
    tensors, js = d / "ckpt-00000002.safetensors", d / "ckpt-00000002.json"
    if damage == "truncate":
        tensors.write_bytes(tensors.read_bytes()[:-50])
    elif damage == "flip-tensor-byte":
        b = bytearray(tensors.read_bytes()); b[-10] ^= 0xFF; tensors.write_bytes(bytes(b))
    elif damage == "flip-json-byte":
        b = bytearray(js.read_bytes()); b[len(b) // 2] ^= 0x55; js.write_bytes(bytes(b))
    elif damage == "delete-tensors":
        tensors.unlink()
    elif damage == "empty-json":
        js.write_bytes(b"")
    else:
        js.write_text(js.read_text().replace("gankit-ckpt-1", "gankit-ckpt-0"))
    with pytest.warns(UserWarning, match="skipping damaged checkpoint"):
        state, record = load_latest(d)
    assert record["step"] == 1 and torch.equal(state["w"], torch.full((64,), 1.0))


def test_a_failed_checkpoint_write_keeps_the_previous_one(toy32, tmp_path, monkeypatch, capsys):
    import errno

    import gankit.training.checkpoint as ck
    t = Trainer.new(tiny("dcgan-32-cpu", "train.steps=4"), str(toy32), tmp_path, progress=False)
    real = ck._write_atomic

    def full_disk(path, data, fault=""):
        if path.name == "ckpt-00000004.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data, fault)

    monkeypatch.setattr(ck, "_write_atomic", full_disk)
    with pytest.raises(GankitError, match=r"could not write checkpoint .*ckpt-00000004 \(No space left on device\); "
                                          r"the previous one \(ckpt-00000002.json\) is intact"):
        t.run()
    names = sorted(p.name for p in (t.run_dir / "checkpoints").iterdir())
    assert names == ["ckpt-00000002.json", "ckpt-00000002.safetensors"]  # no orphan, no temporary
    assert read_checkpoint(t.run_dir / "checkpoints" / "ckpt-00000002.json")[1]["step"] == 2


def test_full_disk_or_unwritable_runs_folder_is_a_clear_error_before_training(toy32, tmp_path, monkeypatch, capsys):
    import shutil
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    argv = ["train", "--preset", "dcgan-32-cpu", "--data", str(toy32), "--set", "model.width=8",
            "--set", "train.batch=8", "--set", "train.steps=2"]
    assert main(argv + ["--runs", str(blocker / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gankit: error: --runs") and "a-file/runs" in err and len(err.splitlines()) == 1

    Usage = type(shutil.disk_usage(tmp_path))
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10 << 30, 10 << 30, 1 << 20))  # 1 MiB free
    assert main(argv + ["--runs", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "1 MiB free on its disk" in err
    (run,) = (tmp_path / "runs").iterdir()
    assert not (run / "checkpoints").exists() and not (run / "metrics.jsonl").exists()  # nothing trained


def _png(mode, size, value):
    buf = io.BytesIO()
    Image.new(mode, size, value).save(buf, "PNG")
    return buf.getvalue()


def test_every_kind_of_bad_input_is_converted_or_skipped_and_counted(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    good = io.BytesIO()
    Image.new("RGB", (40, 40), (200, 30, 30)).save(good, "JPEG")
    (src / "good.jpg").write_bytes(good.getvalue())
    # converted
    (src / "grey.png").write_bytes(_png("L", (20, 20), 128))
    (src / "rgba-transparent.png").write_bytes(_png("RGBA", (20, 20), (0, 0, 0, 0)))
    (src / "grey16.png").write_bytes(_png("I;16", (20, 20), 32768))
    cmyk = io.BytesIO()
    Image.new("CMYK", (20, 20), (0, 255, 255, 0)).save(cmyk, "JPEG")
    (src / "cmyk.jpg").write_bytes(cmyk.getvalue())
    (src / "palette.gif").write_bytes(_png("P", (20, 20), 3))
    # skipped
    (src / "truncated.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    (src / "zero.jpg").write_bytes(b"")
    (src / "text.png").write_text("this is not an image")
    (src / "one-pixel.png").write_bytes(_png("RGB", (1, 1), (9, 9, 9)))
    bomb = io.BytesIO()
    Image.new("1", (10_000, 6_000)).save(bomb, "PNG")  # 60 megapixels in a few kB
    (src / "bomb.png").write_bytes(bomb.getvalue())
    os.symlink(src / "loop-b.jpg", src / "loop-a.jpg")
    os.symlink(src / "loop-a.jpg", src / "loop-b.jpg")
    os.symlink(src / "missing.jpg", src / "dangling.jpg")
    assert main(["prepare", "folder", str(src), "--res", "32", "--out", str(tmp_path / "out"), "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    skipped = sorted(Path(s["file"]).name for s in meta["skipped"])
    assert skipped == ["bomb.png", "dangling.jpg", "loop-a.jpg", "loop-b.jpg", "one-pixel.png", "text.png",
                       "truncated.jpg", "zero.jpg"]
    assert meta["count"] == 6 and sum(meta["skipped_by_reason"].values()) == 8
    assert "skipped 8" in printed and "skipped by reason:" in printed
    ds = PreparedDataset(tmp_path / "out")
    files = [Path(f).name for f in (tmp_path / "out" / "files.txt").read_text().split()]
    img = dict(zip(files, ds.images))
    assert abs(int(img["grey16.png"][..., 0].mean()) - 128) <= 1  # 16-bit scaled, not clipped to white
    assert img["rgba-transparent.png"].min() == 255  # transparency composited onto white
    assert img["cmyk.jpg"][..., 0].mean() > 200 and img["cmyk.jpg"][..., 1].mean() < 60  # CMYK red stays red
    print("bad inputs:", json.dumps({"tried": 14, "converted": 5, "skipped": 8, "good": 1,
                                     "by_reason": meta["skipped_by_reason"]}))


@pytest.mark.parametrize("how", ["chmod", "simulated"])
def test_unreadable_file_is_skipped(tmp_path, monkeypatch, how):
    """A file that cannot be opened is skipped and reported, never fatal. Root reads files whatever
    their mode, so where the tests run as root (CI containers) opening it is made to fail as a mode
    of 000 makes it fail for anyone else: PermissionError from open()."""
    import builtins
    import errno
    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (20, 20)).save(src / "ok.png")
    Image.new("RGB", (20, 20)).save(src / "locked.png")
    if how == "chmod":
        if os.geteuid() == 0:
            pytest.skip("root reads files whatever their mode (the simulated case covers root)")
        os.chmod(src / "locked.png", 0)
    else:
        real_open = builtins.open

        def no_permission(file, *args, **kwargs):  # PIL opens a path with builtins.open
            if str(file).endswith("locked.png"):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", no_permission)  # workers=1: decoded in this process
    meta = prepare("folder", [src], 32, tmp_path / "out", progress=False, workers=1)
    assert meta["count"] == 1 and meta["skipped_count"] == 1, meta
    (skipped,) = meta["skipped"]
    assert skipped["file"] == str(src / "locked.png") and skipped["error"].startswith("PermissionError:"), skipped
    assert meta["skipped_by_reason"] == {"PermissionError": 1}
    assert PreparedDataset(tmp_path / "out").images.shape == (1, 32, 32, 3)


def test_config_values_are_validated_naming_the_key(toy32, tmp_path, capsys):
    base = ["train", "--preset", "dcgan-32-cpu", "--data", str(toy32), "--runs", str(tmp_path)]
    cases = {"train.batch=abc": "train.batch", "train.batch=0": "train.batch", "optim.lr_g=-1": "optim.lr_g",
             "train.ema=1.5": "train.ema", "model.res=48": "model.res", "no.such=1": "no.such",
             "train.nan_lr_factor=0": "train.nan_lr_factor", "train.precision=fp8": "train.precision"}
    for override, key in cases.items():
        assert main(base + ["--set", override]) == 2, override
        err = capsys.readouterr().err.strip()
        assert key in err and len(err.splitlines()) == 1, (override, err)
    assert not list(tmp_path.iterdir())  # no run folder for a rejected config


def test_a_malformed_run_config_or_checkpoint_is_a_clear_error(toy32, tmp_path, capsys):
    t = Trainer.new(tiny("dcgan-32-cpu", "train.steps=2"), str(toy32), tmp_path, progress=False)
    t.run()
    cfg = json.loads((t.run_dir / "config.json").read_text())
    for bad, key in (({**cfg, "train": {**cfg["train"], "batch": "eight"}}, "train.batch"),
                     ({**cfg, "model": {**cfg["model"], "width": [8]}}, "model.width"),
                     ("{not json", "config.json")):
        (t.run_dir / "config.json").write_text(bad if isinstance(bad, str) else json.dumps(bad))
        assert main(["train", "--resume", str(t.run_dir)]) == 2
        err = capsys.readouterr().err.strip()
        assert key in err and len(err.splitlines()) == 1, err
    (t.run_dir / "config.json").write_text(json.dumps(cfg))
    # every checkpoint damaged: a clear error, not a traceback
    for p in (t.run_dir / "checkpoints").glob("*.safetensors"):
        p.write_bytes(b"\0" * 10)
    assert main(["sample", str(t.run_dir), "--out", str(tmp_path / "x.png")]) == 2
    assert "no run folder with an intact checkpoint" in capsys.readouterr().err


# --- bounded fuzzing of every parser that reads files from outside ------------------------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# CI runs the same 150 examples each time (derandomized); GANKIT_FUZZ_RANDOM=1 GANKIT_FUZZ_EXAMPLES=5000 explores.
FUZZ = settings(max_examples=int(os.environ.get("GANKIT_FUZZ_EXAMPLES", "150")), deadline=None,
                derandomize=not os.environ.get("GANKIT_FUZZ_RANDOM"),
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _seed_images() -> list[bytes]:
    out = []
    for fmt, mode in (("PNG", "RGB"), ("JPEG", "RGB"), ("PNG", "I;16"), ("GIF", "P"), ("BMP", "RGB"), ("WEBP", "RGB")):
        buf = io.BytesIO()
        Image.new(mode, (24, 20), 100 if mode in ("I;16", "P") else (10, 120, 230)).save(buf, fmt)
        out.append(buf.getvalue())
    return out


SEEDS = _seed_images()


@FUZZ
@given(seed=st.sampled_from(SEEDS), cuts=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
       truncate=st.one_of(st.none(), st.integers(0, 2000)), junk=st.binary(max_size=64))
def test_fuzz_image_decoder_never_crashes_prepare(tmp_path_factory, seed, cuts, truncate, junk):
    from gankit.data.prepare import _decode
    data = bytearray(seed)
    for pos, value in cuts:  # flipped bytes anywhere in the file
        data[pos % len(data)] = value
    data = bytes(data[:truncate] if truncate is not None else data) + junk
    path = tmp_path_factory.mktemp("fuzz") / "x.png"
    path.write_bytes(data)
    i, img, err = _decode((0, str(path)), 32, None)  # must never raise
    assert (img is None) != (err is None)
    if img is not None:
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8


@FUZZ
@given(text=st.text(alphabet=st.sampled_from(list("01-+ \n\tab.jpgx9")), max_size=400))
def test_fuzz_celeba_label_files_parse_or_fail_clearly(tmp_path_factory, text):
    from gankit.data.prepare import read_celeba_attributes, read_celeba_partition
    path = tmp_path_factory.mktemp("fuzz") / "labels.txt"
    path.write_text(text)
    for reader in (read_celeba_attributes, read_celeba_partition):
        try:
            reader(path)
        except GankitError as e:
            assert str(path) in str(e)


@FUZZ
@given(blob=st.one_of(st.binary(max_size=300),
                      st.builds(lambda b, n: b[:n], st.just(__import__("pickle").dumps(
                          {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]})), st.integers(0, 400))))
def test_fuzz_cifar_batches_never_run_code_or_crash(tmp_path_factory, blob):
    from gankit.data.prepare import plan_cifar10
    d = tmp_path_factory.mktemp("fuzz")
    (d / "data_batch_1").write_bytes(blob)
    try:
        plan = plan_cifar10([d])
        assert plan.arrays.dtype == np.uint8
    except GankitError as e:
        assert "data_batch_1" in str(e) or "cifar10" in str(e)


def test_a_malicious_cifar_pickle_is_refused(tmp_path):
    import pickle

    from gankit.data.prepare import plan_cifar10

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(GankitError, match="refusing to load"):
        plan_cifar10([tmp_path])
    assert not (tmp_path / "pwned").exists()


@FUZZ
@given(record=st.dictionaries(st.sampled_from(["format", "step", "tensors", "sha256", "state", "x"]),
                              st.one_of(st.none(), st.integers(), st.text(max_size=20),
                                        st.dictionaries(st.text(max_size=3), st.integers(), max_size=3)), max_size=6),
       raw=st.binary(max_size=200))
def test_fuzz_checkpoint_reader_rejects_malformed_files_clearly(tmp_path_factory, record, raw):
    d = tmp_path_factory.mktemp("fuzz")
    (d / "ckpt-00000001.json").write_text(json.dumps(record))
    (d / "ckpt-00000001.safetensors").write_bytes(raw)
    (d / "ckpt-00000002.json").write_bytes(raw)
    for name in ("ckpt-00000001.json", "ckpt-00000002.json"):
        try:
            read_checkpoint(d / name)
        except GankitError as e:
            assert name in str(e)

"""The README's Python blocks run as written, each in a fresh process; an exported folder loads in a
fresh process and samples the run's images."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

import gankit

ROOT = Path(__file__).parent.parent


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, GANKIT_CACHE=str(cwd / "cache"), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=400)


def test_readme_python_blocks_run(tmp_path):
    blocks = python_blocks()
    assert blocks, "the README has Python blocks"
    for i, code in enumerate(blocks):
        result = run_python(code, tmp_path)
        assert result.returncode == 0, f"README Python block {i} failed:\n{code}\n{result.stderr[-3000:]}"


def test_exported_folder_samples_the_runs_images_in_a_fresh_process(tmp_path):
    run = gankit.train("dcgan-32-cpu", "toyfaces", steps=6, runs=tmp_path / "runs", width=8, batch=8)
    want = gankit.load(run).sample(12, seed=3)
    out = gankit.export(run, tmp_path / "exported")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors", "samples.png"]
    code = (f"import gankit, numpy as np; m = gankit.load({str(out)!r}); "
            f"np.save('got.npy', m.sample(12, seed=3)); print(m.info['weights'])")
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert np.array_equal(np.load(tmp_path / "got.npy"), want)
    assert result.stdout.strip() == "ema" and json.loads((out / "config.json").read_text())["step"] == 6
    # gankit.info reads both folders in one shape, without building networks
    of_run, of_export = gankit.info(run), gankit.info(out)
    assert (of_run["kind"], of_export["kind"]) == ("run", "exported")
    for key in ("family", "preset", "step", "data", "config"):
        assert of_run[key] == of_export[key], key
    assert (of_run["family"], of_run["step"], of_run["config"]["model"]["width"]) == ("dcgan", 6, 8)


def test_export_refuses_a_folder_in_use(tmp_path, capsys):
    from gankit.cli import main
    run = gankit.train("vae-64-cpu", "toyfaces", steps=2, runs=tmp_path / "runs", width=8, batch=8, res=32)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    assert main(["export", str(run), str(tmp_path / "busy")]) == 2
    assert "not empty" in capsys.readouterr().err and (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    assert main(["export", str(run), str(tmp_path / "vae")]) == 0
    model = gankit.load(tmp_path / "vae")  # the encoder travels with a VAE
    codes = model.encode(model.sample(3, seed=1))
    assert codes.shape == (3, model.config.model.z_dim)


def test_huggingface_hub_reads_an_exported_folder(tmp_path):
    """huggingface_hub's ModelHubMixin builds the generator from config.json and loads model.safetensors."""
    import pytest
    pytest.importorskip("huggingface_hub")
    import torch

    from gankit.exported import hub_generator_class
    run = gankit.train("dcgan-32-cpu", "toyfaces", steps=4, runs=tmp_path / "runs", width=8, batch=8)
    out = gankit.export(run, tmp_path / "exported")
    hub = hub_generator_class().from_pretrained(str(out)).eval()
    ours = gankit.load(out).family.nets["G"].state_dict()
    theirs = hub.generator.state_dict()
    assert theirs.keys() == ours.keys() and all(torch.equal(theirs[k], ours[k]) for k in ours)  # the same weights
    z = torch.randn(5, 100, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # gankit.load follows GANKIT_PRECISION (bf16 on the other numeric path), the mixin runs fp32
        torch.testing.assert_close(hub(z), gankit.load(out).family.generate(z), atol=2e-2, rtol=0)

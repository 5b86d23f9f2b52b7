"""The browser explorer: its API with good and bad input, and the page in headless Chromium."""
import io
import json
import os
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from gankit.cli import main  # noqa: E402

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser", shutil.which("chromium") or "")
                 if p and Path(p).exists()), None)
DRIVER = next((p for p in ("/usr/bin/chromedriver", shutil.which("chromedriver") or "") if p and Path(p).exists()), None)
SHOTS = Path(os.environ.get("GANKIT_SCREENSHOTS", Path(__file__).resolve().parents[1] / "runs" / "screenshots"))


@pytest.fixture(scope="module")
def server(toy32, tmp_path_factory):
    """A tiny trained DCGAN run, with the planted generator and attribute labeller (tests/planted.py),
    served on a local port bound here and handed to uvicorn (no window for another process to take it)."""
    import uvicorn

    from gankit.serve.app import Explorer, build_app
    from tests.planted import plant
    runs = tmp_path_factory.mktemp("runs")
    assert main(["train", "--preset", "dcgan-32-cpu", "--data", str(toy32), "--runs", str(runs), "--quiet",
                 "--set", "model.width=8", "--set", "train.batch=8", "--set", "train.steps=2"]) == 0
    run = next(runs.iterdir())
    with pytest.MonkeyPatch.context() as mp:
        plant(mp)
        explorer = Explorer(run, n_pca=3, attributes=("Smiling", "Eyeglasses"), fit_n=2000)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        srv = uvicorn.Server(uvicorn.Config(build_app(explorer), host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.time() + 30
        while not srv.started and time.time() < deadline:
            time.sleep(0.05)
        assert srv.started, "the explorer did not start within 30 s"
        yield f"http://127.0.0.1:{port}", explorer, run
        srv.should_exit = True
        thread.join(10)
        sock.close()


def request(url, payload=None, data=None, headers=None):
    body = json.dumps(payload).encode() if payload is not None else data
    req = urllib.request.Request(url, data=body, headers=headers or {"Content-Type": "application/json"},
                                 method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, {"raw": raw.decode(errors="replace")}


def upload(url, content: bytes, name="x.png"):
    boundary = "gankitboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return request(url + "/api/project", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})


def png(size=(40, 40), colour=(200, 40, 40), mode="RGB"):
    buf = io.BytesIO()
    Image.new(mode, size, colour if mode == "RGB" else 0).save(buf, "PNG")
    return buf.getvalue()


def test_api_samples_edits_interpolates_and_projects(server):
    url, explorer, _ = server
    status, info = request(url + "/api/info")
    names = [d["name"] for d in info["directions"]]
    assert status == 200 and names[:3] == ["PC1", "PC2", "PC3"] and {"Smiling", "Eyeglasses"} <= set(names)
    status, s = request(url + "/api/sample", {"seed": 3, "n": 4})
    assert status == 200 and len(s["images"]) == 4 and len(s["codes"][0]) == info["z_dim"]
    assert request(url + "/api/sample", {"seed": 3, "n": 4})[1]["codes"] == s["codes"]  # a seed is a grid
    z = s["codes"][0]
    _, plain = request(url + "/api/edit", {"code": z, "sliders": {}})
    _, moved = request(url + "/api/edit", {"code": z, "sliders": {"PC1": 3, "Smiling": 2}})
    assert plain["image"] != moved["image"] and plain["code"] == z and moved["code"] != z
    _, strip = request(url + "/api/interpolate", {"a": s["codes"][0], "b": s["codes"][1], "steps": 5})
    assert Image.open(io.BytesIO(_decode(strip["strip"]))).size[0] > 5 * 32
    # the sliders' attribute directions are the planted ones
    from tests.planted import direction_of
    for d in explorer.directions:
        if d["name"] in ("Smiling", "Eyeglasses"):
            cos = float(torch.nn.functional.cosine_similarity(d["vector"], direction_of(d["name"], explorer.z_dim), dim=0))
            assert cos > 0.9, (d["name"], cos)
    # an image the generator made projects back to (nearly) its code; a flat red square cannot
    status, p = upload(url, _decode(s["images"][0]))
    assert status == 200 and len(p["code"]) == info["z_dim"] and p["l1"] < 0.05, p["l1"]
    cos = torch.nn.functional.cosine_similarity(torch.tensor(p["code"]), torch.tensor(z), dim=0)
    assert cos > 0.95, float(cos)
    status, p = upload(url, png())
    assert status == 200 and p["l1"] > 0.2, p["l1"]


def _decode(data_url):
    import base64
    return base64.b64decode(data_url.split(",", 1)[1])


def test_a_projection_does_not_stall_other_requests(server, monkeypatch):
    """Blocking work runs off the event loop: while a long projection runs, samples still answer."""
    from gankit.serve import app
    url, explorer, _ = server
    started, real_project = threading.Event(), app.project
    monkeypatch.setattr(app, "project", lambda *a, **k: started.set() or real_project(*a, **k))
    monkeypatch.setattr(explorer, "project_steps", 3000)
    s = request(url + "/api/sample", {"seed": 5, "n": 1})[1]
    result = {}
    worker = threading.Thread(target=lambda: result.update(zip(("status", "body"), upload(url, _decode(s["images"][0])))))
    worker.start()
    assert started.wait(30)
    answered_during = 0
    for seed in range(5):
        status, out = request(url + "/api/sample", {"seed": seed, "n": 2})
        assert status == 200 and len(out["images"]) == 2
        answered_during += worker.is_alive()
    worker.join(120)
    assert answered_during == 5, "sample requests waited for the projection"
    assert result["status"] == 200 and result["body"]["l1"] < 0.05


def test_api_refuses_bad_input_with_a_message_and_keeps_serving(server, caplog):
    url, explorer, run = server
    z = [0.0] * explorer.z_dim
    bad = [("/api/edit", {"code": [0.0] * 3}, "must have"),
           ("/api/edit", {"code": z, "sliders": {"PC1": 99}}, "between"),
           ("/api/edit", {"code": z, "sliders": {"PC1": "abc"}}, "must be a number"),
           ("/api/edit", {"code": z, "sliders": {"../../etc/passwd": 1}}, "unknown direction"),
           ("/api/edit", {"code": [1e9] * explorer.z_dim}, "huge"),
           ("/api/edit", b"{not json", "not JSON"),
           ("/api/edit", b"[1, 2]", "JSON object"),
           ("/api/sample", {"seed": -5}, "seed must be between"),
           ("/api/sample", {"n": 10_000}, "n must be between"),
           ("/api/interpolate", {"a": z, "b": z, "steps": 1000}, "steps must be between")]
    for path, payload, message in bad:
        status, out = (request(url + path, data=payload) if isinstance(payload, bytes) else request(url + path, payload))
        assert status == 400 and message in out["error"], (path, payload, out)
    # uploads: not an image, an empty file, a decompression bomb, a 1x1 image
    bomb = io.BytesIO()
    Image.new("1", (10_000, 6_000)).save(bomb, "PNG")
    for content, message in ((b"this is not an image", "not a usable image"), (b"", "empty"),
                             (bomb.getvalue(), "megapixel"), (png((1, 1)), "too small")):
        status, out = upload(url, content)
        assert status == 400 and message in out["error"], (message, out)
    # nothing outside the fixed routes: no file can be read through the server
    for path in ("/../../etc/passwd", "/api/../config.json", "/checkpoints/", f"/{run.name}/config.json"):
        status, out = request(url + path)
        assert status == 404, path
    assert request(url + "/api/info")[0] == 200  # still serving


def test_unknown_run_is_a_clear_error(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "nope")]) == 2
    assert "no run folder with an intact checkpoint" in capsys.readouterr().err


@pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                    reason="Chromium and chromedriver not installed (apt install chromium chromium-driver)")
def test_page_in_headless_chromium(server, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    url, explorer, _ = server
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    wait = WebDriverWait(driver, 60)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        driver.get(url)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        wait.until(lambda d: (d.find_element(By.ID, "current").get_attribute("src") or "").startswith("data:"))
        assert len(driver.find_elements(By.CSS_SELECTOR, "#grid img")) == 16
        before = driver.find_element(By.ID, "current").get_attribute("src")
        driver.save_screenshot(str(SHOTS / "explorer-1-sampled.png"))

        def settled(d):
            return d.find_element(By.TAG_NAME, "body").get_attribute("data-busy") == "0"

        # move a slider: the image changes
        slider = driver.find_element(By.ID, "slider-PC1")
        driver.execute_script("arguments[0].value = 3; arguments[0].dispatchEvent(new Event('input'));", slider)
        wait.until(lambda d: settled(d) and d.find_element(By.ID, "current").get_attribute("src") != before)
        moved = driver.find_element(By.ID, "current").get_attribute("src")
        smile = driver.find_element(By.ID, "slider-Smiling")
        driver.execute_script("arguments[0].value = -2; arguments[0].dispatchEvent(new Event('input'));", smile)
        wait.until(lambda d: settled(d) and d.find_element(By.ID, "current").get_attribute("src") != moved)
        driver.save_screenshot(str(SHOTS / "explorer-2-sliders.png"))

        # interpolate between the two picked samples
        driver.find_element(By.ID, "interpolate").click()
        wait.until(lambda d: (d.find_element(By.ID, "strip").get_attribute("src") or "").startswith("data:"))

        # upload an image: it is projected, then edited with the sliders
        target = tmp_path / "face.png"
        Image.fromarray((np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)).save(target)
        shown = driver.find_element(By.ID, "current").get_attribute("src")
        driver.find_element(By.ID, "upload").send_keys(str(target))
        wait.until(lambda d: "L1 error" in d.find_element(By.ID, "l1").text)
        wait.until(lambda d: settled(d) and d.find_element(By.ID, "current").get_attribute("src") != shown)
        assert driver.find_element(By.ID, "message").text == ""

        # a bad upload: a message on the page, not a crash
        bad = tmp_path / "notes.png"
        bad.write_text("not an image")
        driver.find_element(By.ID, "upload").send_keys(str(bad))
        wait.until(lambda d: "not a usable image" in d.find_element(By.ID, "message").text)
        driver.save_screenshot(str(SHOTS / "explorer-3-projected-and-bad-upload.png"))
    finally:
        driver.quit()
    assert (SHOTS / "explorer-2-sliders.png").stat().st_size > 10_000

"""The browser explorer: `gankit serve RUN_DIR [--port 7860]`, a Starlette app and one small page.

The page samples a grid from a seed, edits a chosen sample with sliders along PCA eigendirections
and attribute directions (combined), interpolates between two samples, projects an uploaded image
into z and downloads the current image and its code. Every route is fixed: the server reads only
the run's checkpoint and its explore/ directions, never a path from a request. Bad input is a 400
with a message the page shows, and a log line.
"""
from __future__ import annotations

import base64
import io
import json
import logging
import math
import re
import threading
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from ..errors import GankitError
from ..images import grid, to_uint8
from ..latent import directions as dirs
from ..latent.interpolate import paths
from ..latent.project import project
from ..latent.studio import Studio

log = logging.getLogger("gankit.serve")
PAGE = Path(__file__).with_name("page.html")
MAX_UPLOAD = 10 << 20  # bytes
MAX_SLIDER = 5.0  # standard deviations
DEFAULT_ATTRIBUTES = ("Smiling", "Wearing_Lipstick", "Eyeglasses", "Male", "Blond_Hair", "Mustache")


class BadInput(Exception):
    """A request the explorer refuses, with the message the page shows."""


def png_data_url(images_u8: np.ndarray, nrow: int | None = None) -> str:
    arr = images_u8[0] if len(images_u8) == 1 else grid(images_u8, nrow=nrow)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


class Explorer:
    """The model side: a run, its latent directions, and the operations the page calls."""

    def __init__(self, run_dir: str | Path, n_pca: int = 6, attributes: tuple[str, ...] = DEFAULT_ATTRIBUTES,
                 fit_n: int = 1000, seed: int = 0, project_steps: int = 150, device: str = "cpu"):
        # requests run in a thread pool; the model lock keeps one torch call on the model at a time
        # (sampling flips train/eval modes), and a projection takes it for one step at a time
        self.lock = threading.Lock()
        self.project_steps = project_steps
        self.studio = Studio(run_dir, seed=seed, device=device)
        self.family = self.studio.family
        self.z_dim = self.family.cfg.model.z_dim
        self.directions: list[dict] = []  # {"name", "kind", "vector" (unit), "sd"}
        self._load_or_fit_pca(n_pca)
        self._load_or_fit_attributes(attributes, fit_n)

    # --- directions ------------------------------------------------------------------------------
    def _load_or_fit_pca(self, k: int) -> None:
        saved = sorted(self.studio.out_dir.glob("pca-*.pt"))
        saved = [p for p in saved if "prior" not in p.name] or saved
        if saved:
            fit = torch.load(saved[0], map_location="cpu", weights_only=True)
            mean, comps, var, source = fit["mean"], fit["components"], fit["variance"], fit["source"]
        else:  # quick: encoded codes where there is an encoder, else a short projection of a few faces
            source = "encoded" if self.family.has_encoder else "projected"
            n = 500 if source == "encoded" else 32
            x = self.studio.real(n)[0]
            codes = (self.studio.codes_of(x, source, steps=60, restarts=1)[0])
            fit = dirs.pca(codes, k)
            mean, comps, var = fit.mean, fit.components, fit.variance
        self.centre = mean
        for i in range(min(k, len(comps))):
            self.directions.append({"name": f"PC{i + 1}", "kind": f"PCA of {source} codes",
                                    "vector": comps[i], "sd": float(var[i].sqrt())})

    def _load_or_fit_attributes(self, names: tuple[str, ...], n: int) -> None:
        for path in sorted(self.studio.out_dir.glob("direction-*.pt")):
            saved = torch.load(path, map_location="cpu", weights_only=True)
            name = path.stem[len("direction-"):]
            self.directions.append({"name": name, "kind": f"attribute ({saved['method']})",
                                    "vector": saved["direction"], "sd": float(saved["sd"])})
        have = {d["name"] for d in self.directions}
        try:
            _, known = self.studio.labeller()
        except GankitError as e:
            log.info("no attribute network for this run (%s); attribute sliders only from explore/", e)
            return
        prior = self.studio.prior(4000, 7)
        for name in names:
            if name in have or name not in known:
                continue
            try:
                d, _ = self.studio.direction(name, "classifier", "means", n)
            except GankitError as e:
                log.warning("attribute %s left out: %s", name, e)
                continue
            self.directions.append({"name": name, "kind": "attribute (classifier)", "vector": d,
                                    "sd": dirs.spread(prior, d)})

    # --- operations --------------------------------------------------------------------------------
    def code(self, value) -> torch.Tensor:
        try:
            z = torch.tensor(value, dtype=torch.float32, device=self.family.device)
        except (TypeError, ValueError):
            raise BadInput("the code must be a list of numbers") from None
        if z.shape != (self.z_dim,):
            raise BadInput(f"the code must have {self.z_dim} numbers, got shape {tuple(z.shape)}")
        if not torch.isfinite(z).all() or z.abs().max() > 100:
            raise BadInput("the code holds non-finite or huge values")
        return z

    def sample(self, seed, n) -> dict:
        seed, n = _int(seed, "seed", 0, 2**31 - 1), _int(n, "n", 1, 64)
        z = self.family.sample_z(n, torch.Generator(self.family.device).manual_seed(seed))
        with self.lock:
            images = to_uint8(self.studio.images(z))
        return {"images": [png_data_url(im[None]) for im in images], "codes": z.tolist()}

    def edit(self, z, sliders: dict) -> dict:
        z = self.code(z)
        if not isinstance(sliders, dict):
            raise BadInput("sliders must be an object of name: value")
        by_name = {d["name"]: d for d in self.directions}
        edited = z.clone()
        for name, value in sliders.items():
            if name not in by_name:
                raise BadInput(f"unknown direction {name!r}")
            v = _number(value, name, -MAX_SLIDER, MAX_SLIDER)
            edited += v * by_name[name]["sd"] * by_name[name]["vector"]
        edited = self.family.to_support(edited)
        with self.lock:
            image = to_uint8(self.studio.images(edited[None]))
        return {"image": png_data_url(image), "code": edited.tolist()}

    def interpolate(self, a, b, steps) -> dict:
        za, zb = self.code(a), self.code(b)
        steps = _int(steps, "steps", 2, 24)
        z = paths(za[None], zb[None], steps, "slerp" if self.family.prior == "normal" else "lerp")[0]
        with self.lock:
            strip = to_uint8(self.studio.images(z))
        return {"strip": png_data_url(strip, nrow=steps)}

    def project(self, data: bytes, steps: int | None = None) -> dict:
        from ..data.prepare import MAX_PIXELS, load_image
        if not data:
            raise BadInput("the upload is empty")
        if len(data) > MAX_UPLOAD:
            raise BadInput(f"the upload is {len(data) / 2**20:.1f} MiB; the limit is {MAX_UPLOAD >> 20} MiB")
        try:
            arr = load_image(io.BytesIO(data), self.studio.res, None)
        except Image.DecompressionBombError:
            raise BadInput(f"the image is over the {MAX_PIXELS // 10**6} megapixel limit") from None
        except Exception as e:  # not an image, truncated, too big or too small
            why = re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "the upload", str(e))[:120]
            raise BadInput(f"not a usable image ({type(e).__name__}: {why})") from None
        x = torch.from_numpy(np.array(arr)).to(self.family.device).permute(2, 0, 1)[None].float().div(127.5).sub(1)
        with self.lock:
            init = self.family.codes(x) if self.family.has_encoder else None
        result = project(self.family, x, steps=steps or self.project_steps, restarts=2, init=init,
                         guard=lambda: self.lock)
        z = result.z[0]
        with self.lock:
            image = to_uint8(self.studio.images(z[None]))
        return {"image": png_data_url(image), "code": z.tolist(),
                "target": png_data_url(arr[None]), "l1": round(float(result.error[0]), 4)}

    def info(self) -> dict:
        return {"run": self.studio.run_dir.name, "preset": self.family.cfg.preset, "family": self.family.name,
                "step": self.studio.record["step"], "z_dim": self.z_dim, "res": self.studio.res,
                "max_slider": MAX_SLIDER,
                "directions": [{"name": d["name"], "kind": d["kind"]} for d in self.directions]}


def _number(value, name: str, lo: float, hi: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or not lo <= v <= hi:
        raise BadInput(f"{name} must be between {lo:g} and {hi:g}, got {value!r}")
    return v


def _int(value, name: str, lo: int, hi: int) -> int:
    v = _number(value, name, lo, hi)
    if v != int(v):
        raise BadInput(f"{name} must be a whole number, got {value!r}")
    return int(v)


def build_app(explorer: Explorer) -> Starlette:
    """The routes: the page, run info, and four operations; bad input is a 400 with a message."""

    async def page(request: Request):
        return HTMLResponse(PAGE.read_text())

    async def body(request: Request) -> dict:
        try:
            data = json.loads(await request.body() or b"{}")
        except ValueError:
            raise BadInput("the request is not JSON") from None
        if not isinstance(data, dict):
            raise BadInput("the request must be a JSON object")
        return data

    def handler(fn):
        async def run(request: Request):
            try:
                return JSONResponse(await fn(request))
            except BadInput as e:
                log.warning("%s %s: %s", request.method, request.url.path, e)
                return JSONResponse({"error": str(e)}, status_code=400)
            except Exception:  # never a crash: log it, tell the page
                log.exception("%s %s failed", request.method, request.url.path)
                return JSONResponse({"error": "internal error (see the server log)"}, status_code=500)
        return run

    # torch work runs in Starlette's thread pool, never on the event loop: a projection (many
    # optimisation steps) must not stall the other requests
    async def info(request):
        return explorer.info()

    async def sample(request):
        d = await body(request)
        return await run_in_threadpool(explorer.sample, d.get("seed", 0), d.get("n", 16))

    async def edit(request):
        d = await body(request)
        return await run_in_threadpool(explorer.edit, d.get("code"), d.get("sliders", {}))

    async def interpolate(request):
        d = await body(request)
        return await run_in_threadpool(explorer.interpolate, d.get("a"), d.get("b"), d.get("steps", 10))

    async def upload(request):
        if int(request.headers.get("content-length") or 0) > MAX_UPLOAD + 4096:
            raise BadInput(f"the upload is over the {MAX_UPLOAD >> 20} MiB limit")
        form = await request.form(max_files=1, max_fields=2)
        f = form.get("image")
        if f is None or isinstance(f, str):
            raise BadInput("send the image as the form field 'image'")
        return await run_in_threadpool(explorer.project, await f.read(MAX_UPLOAD + 1))

    routes = [Route("/", page), Route("/api/info", handler(info)),
              Route("/api/sample", handler(sample), methods=["POST"]),
              Route("/api/edit", handler(edit), methods=["POST"]),
              Route("/api/interpolate", handler(interpolate), methods=["POST"]),
              Route("/api/project", handler(upload), methods=["POST"])]
    return Starlette(routes=routes)


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 7860, **kwargs) -> None:
    """Build the explorer for a run and serve it until interrupted."""
    import uvicorn
    explorer = Explorer(run_dir, **kwargs)
    log.info("serving %s on http://%s:%d (%d directions)", run_dir, host, port, len(explorer.directions))
    uvicorn.run(build_app(explorer), host=host, port=port, log_level="info")

"""The latent studio on a trained run: interpolation, projection, PCA walks and attribute directions.

Every method writes PNG montages and a JSON record of what it did into RUN_DIR/explore/ and returns
that record. `gankit explore RUN_DIR interpolate|project|pca|attribute` calls these.

    studio = Studio("runs/00000-dcgan-64-celeba64")
    studio.interpolate(pairs=8, steps=10)
    studio.attribute(["Smiling", "Wearing_Lipstick"])
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..data import to_float
from ..errors import GankitError
from ..images import pyplot, save_figure, to_uint8
from ..run import load_run, real_images, run_dataset
from ..training.checkpoint import write_text_atomic
from . import directions as dirs
from .interpolate import paths
from .montage import montage
from .project import project


class Studio:
    """Latent tools bound to one run's newest intact checkpoint."""

    def __init__(self, run_dir: str | Path, seed: int = 0, batch: int = 256, device: str = "cpu"):
        self.run_dir = Path(run_dir)
        self.family, self.record = load_run(self.run_dir, device)
        self.out_dir = self.run_dir / "explore"
        self.seed = seed
        self.batch = batch
        self.res = self.family.cfg.model.res
        self._labeller = None
        self._dataset = None

    # --- helpers -----------------------------------------------------------------------------------
    def generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator(device=self.family.device).manual_seed(self.seed + offset)

    def prior(self, n: int, offset: int = 0) -> torch.Tensor:
        return self.family.sample_z(n, self.generator(offset))

    def images(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) in [-1, 1] for any number of codes (batched)."""
        flat = self.family.to_support(z.reshape(-1, z.shape[-1]))
        return torch.cat([self.family.generate(flat[i:i + self.batch]) for i in range(0, len(flat), self.batch)])

    def montage_of(self, z: torch.Tensor) -> np.ndarray:
        """uint8 (rows, cols, H, W, 3) for codes (rows, cols, dim)."""
        return to_uint8(self.images(z)).reshape(*z.shape[:2], self.res, self.res, 3)

    def save(self, name: str, record: dict) -> dict:
        """Write RUN_DIR/explore/<name>.json (atomically) with the run, its step and the time."""
        record = {"command": name.split("-")[0], "run": str(self.run_dir), "step": self.record["step"],
                  "preset": self.family.cfg.preset, "family": self.family.name, "seed": self.seed,
                  "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **record}
        out = self.out_dir / f"{name}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out, json.dumps(record, indent=2))
        return {**record, "json": str(out)}

    @property
    def dataset(self):
        """The run's prepared dataset, opened once."""
        if self._dataset is None:
            self._dataset = run_dataset(self.run_dir, self.res)
        return self._dataset

    def real(self, n: int, images: str | Path | None = None) -> tuple[torch.Tensor, list[str], np.ndarray | None]:
        """n real images in [-1, 1] (files under `images`, else random images of the run's data), their
        names, and their indices in the prepared dataset (None for files)."""
        arr, names, idx = real_images(self.run_dir, self.res, images, None if images else n, self.seed, limit=n,
                                      dataset=None if images else self.dataset)
        return to_float(torch.from_numpy(np.ascontiguousarray(arr)), self.family.device), names, idx

    def codes_of(self, x: torch.Tensor, how: str = "auto", steps: int = 200, restarts: int = 2) -> tuple[torch.Tensor, str]:
        """Codes of real images: `encoded` (the encoder's posterior means, VAE and VAE-GAN), `projected`
        (L1 optimisation, in chunks of 64), or `auto` (encoded where the family has an encoder)."""
        if how == "auto":
            how = "encoded" if self.family.has_encoder else "projected"
        if how == "encoded":
            if not self.family.has_encoder:
                raise GankitError(f"--source encoded: the {self.family.name} family has no encoder (use projected)")
            return torch.cat([self.family.codes(x[i:i + self.batch]) for i in range(0, len(x), self.batch)]), how
        if how != "projected":
            raise GankitError(f"--source must be auto, encoded, projected or prior, got {how!r}")
        z = [project(self.family, x[i:i + 64], steps, restarts, gen=self.generator(1000 + i)).z
             for i in range(0, len(x), 64)]
        return torch.cat(z), how

    def labeller(self, features: str | Path | None = None):
        """The attribute network of the run's prepared data (PREPARED/features, from
        `gankit train-features`), or the one at `features`."""
        if self._labeller is None:
            from ..metrics.featnet import load_feature_net
            if features is None:
                features = Path(self.dataset.path) / "features"
            net, report = load_feature_net(features)
            if report.get("kind") != "attributes":
                raise GankitError(f"--features {features}: a {report.get('kind')} network; attribute tools need one "
                                  f"trained on attributes (CelebA)")
            self._labeller = (net.to(self.family.device), report["outputs"])
        return self._labeller

    @torch.no_grad()
    def attribute_probs(self, images: torch.Tensor, features: str | Path | None = None) -> tuple[torch.Tensor, list[str]]:
        """Probability of every attribute for images in [-1, 1], by the attribute network."""
        net, names = self.labeller(features)
        out = []
        for i in range(0, len(images), 512):
            with torch.autocast(self.family.device.type, dtype=torch.bfloat16, enabled=self.family.precision is not None):
                x = images[i:i + 512].to(self.family.device).float().add(1).div(2)
                out.append(torch.sigmoid(net.logits(net(x)).float()))
        return torch.cat(out), names

    # --- the four tools ----------------------------------------------------------------------------
    def load_codes(self, path: str | Path) -> torch.Tensor:
        """Codes saved by `project` (project-codes.pt) or an .npy / .pt array of shape (N, z_dim)."""
        path = Path(path)
        try:
            obj = np.load(path) if path.suffix == ".npy" else torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, ValueError, RuntimeError) as e:
            raise GankitError(f"--codes {path}: unreadable ({e})") from None
        z = torch.as_tensor(obj["z"] if isinstance(obj, dict) else obj, dtype=torch.float32)
        dim = self.family.cfg.model.z_dim
        if z.dim() != 2 or z.shape[1] != dim:
            raise GankitError(f"--codes {path}: expected an (N, {dim}) array of codes, got {tuple(z.shape)}")
        return z.to(self.family.device)

    def interpolate(self, pairs: int = 8, steps: int = 10, method: str = "slerp",
                    starts: torch.Tensor | None = None, ends: torch.Tensor | None = None,
                    codes: str | Path | None = None) -> dict:
        """One montage row per pair of codes, from start to end: random codes, the given starts and
        ends, or consecutive codes of a file (`codes`, e.g. projected real faces: 0->1, 1->2, ...)."""
        if codes is not None:
            z = self.load_codes(codes)
            if len(z) < 2:
                raise GankitError(f"--codes {codes}: need at least 2 codes to interpolate")
            starts, ends = z[:-1][:pairs], z[1:][:pairs]
        starts = self.prior(pairs, 1) if starts is None else starts
        ends = self.prior(pairs, 2) if ends is None else ends
        z = paths(starts, ends, steps, method)
        png = montage(self.montage_of(z), self.out_dir / f"interpolate-{method}.png",
                      title=f"{method} between {len(z)} pairs of codes",
                      col_labels=[f"{t:.2f}" for t in np.linspace(0, 1, steps)])
        return self.save(f"interpolate-{method}", {"method": method, "pairs": len(z), "steps": steps,
                                                   "codes": str(codes) if codes else "prior", "files": [str(png)]})

    def project(self, images: str | Path | None = None, n: int = 16, steps: int = 300, restarts: int = 4,
                lr: float = 0.05) -> dict:
        """Codes for real images by minimising |x - G(z)|_1 (encoder initialisation where the family
        has one); a montage of originals, starting points and projections, and per-image errors."""
        x, names, _ = self.real(n, images)
        init = self.family.codes(x) if self.family.has_encoder else None
        t0 = time.time()
        result = project(self.family, x, steps, restarts, lr, init=init, gen=self.generator(3))
        seconds = time.time() - t0
        rows = [to_uint8(x)]
        labels = ["original"]
        if init is not None:
            rows.append(to_uint8(self.images(init)))
            labels.append("encoder")
        rows.append(to_uint8(self.images(result.z)))
        labels.append("projected")
        png = montage(np.stack(rows), self.out_dir / "project.png", title=f"L1 projection, {steps} Adam steps, "
                      f"{restarts} restarts; mean error {float(result.error.mean()):.4f}", row_labels=labels,
                      col_labels=[f"{e:.3f}" for e in result.error.tolist()])
        torch.save({"z": result.z, "names": names}, self.out_dir / "project-codes.pt")
        init_err = None
        if init is not None:
            init_err = float((self.images(init) - x).abs().flatten(1).mean(1).mean())
        return self.save("project", {
            "images": str(images) if images else "run data", "n": len(x), "steps": steps, "restarts": restarts,
            "lr": lr, "init": "encoder" if init is not None else "prior", "seconds": round(seconds, 2),
            "mean_l1": float(result.error.mean()), "encoder_l1": init_err,
            "per_image": [{"image": nm, "l1": round(float(e), 5), "restart": int(r)}
                          for nm, e, r in zip(names, result.error, result.restart)],
            "error_curve": [round(h, 5) for h in result.history[:: max(1, steps // 50)]],
            "files": [str(png), str(self.out_dir / "project-codes.pt")]})

    def pca(self, source: str = "auto", n: int | None = None, k: int = 6, columns: int = 9, span: float = 3.0) -> dict:
        """The mean code of real images (encoded or projected) and walks along its top-k principal
        directions, +-span standard deviations through the centre; the spectrum beside the prior's."""
        if source == "auto":
            source = "encoded" if self.family.has_encoder else "projected"
        n = n or (128 if source == "projected" else 2000)
        if source == "prior":
            codes = self.prior(n, 4)
        else:
            codes, source = self.codes_of(self.real(n)[0], source)
        fit = dirs.pca(codes, k)
        prior_fit = dirs.pca(self.prior(max(n, 2 * codes.shape[1]), 5), k)
        amounts = torch.linspace(-span, span, columns, device=self.family.device)
        z = torch.stack([fit.mean + a * fit.variance[i].sqrt() * fit.components[i]
                         for i in range(len(fit.components)) for a in amounts]).view(len(fit.components), columns, -1)
        png = montage(self.montage_of(z), self.out_dir / f"pca-{source}.png",
                      title=f"top {len(fit.components)} eigendirections of {len(codes)} {source} codes through their mean",
                      row_labels=[f"PC{i + 1} {100 * s:.1f}%" for i, s in enumerate(fit.share.tolist())],
                      col_labels=[f"{a:+.1f}sd" for a in amounts.tolist()])
        spectrum = self._spectrum_plot(fit, prior_fit, source)
        torch.save({"mean": fit.mean, "components": fit.components, "variance": fit.variance, "source": source},
                   self.out_dir / f"pca-{source}.pt")  # the explorer's sliders start from these
        return self.save(f"pca-{source}", {
            "source": source, "n": len(codes), "k": len(fit.components), "span_sd": span,
            "centre_norm": float(fit.mean.norm()), "variance": fit.variance.tolist(),
            "share": fit.share.tolist(), "prior_share": prior_fit.share.tolist(),
            "files": [str(png), str(spectrum), str(self.out_dir / f"pca-{source}.pt")]})

    def _spectrum_plot(self, fit: dirs.PCA, prior_fit: dirs.PCA, source: str) -> Path:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 4))
        ks = np.arange(1, len(fit.share) + 1)
        ax.plot(ks, 100 * fit.share.numpy(), "o-", label=f"{source} codes")
        ax.plot(ks, 100 * prior_fit.share.numpy(), "s--", label="prior samples")
        ax.set_xlabel("principal direction")
        ax.set_ylabel("% of variance")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        out = self.out_dir / f"pca-{source}-spectrum.png"
        save_figure(fig, out)
        return out

    def direction(self, name: str, method: str = "classifier", fit: str = "means", n: int | None = None,
                  features: str | Path | None = None) -> tuple[torch.Tensor, dict]:
        """A unit attribute direction and how it was found: (a) `labels`: codes of real images with the
        dataset's label minus those without; (b) `classifier`: prior samples labelled by the attribute
        network. `fit`: difference of means or a logistic regression's normal."""
        if method == "labels":
            n = n or (2000 if self.family.has_encoder else 256)
            x, _, idx = self.real(n, None)
            labels = self.dataset.attribute(name)[idx]
            codes, how = self.codes_of(x)
            positive = torch.from_numpy(labels > 0)
        elif method == "classifier":
            n = n or 4000
            codes = self.prior(n, 6)
            probs, names = self.attribute_probs(self.images(codes), features)
            if name not in names:
                raise GankitError(f"attribute {name!r}: the attribute network knows {', '.join(names)}")
            # soft labels: every code counts into both means by the network's probability, so rare
            # attributes (Mustache: 4% of CelebA) still give a direction
            positive = probs[:, names.index(name)]
            how = "generated, labelled by the attribute network (soft labels)"
        else:
            raise GankitError(f"--method must be labels or classifier, got {method!r}")
        if float(positive.float().sum()) < 2 or float((1 - positive.float()).sum()) < 2:
            raise GankitError(f"attribute {name}: {float(positive.float().sum()):.1f} of {len(positive)} codes have it; "
                              f"too few on one side to fit a direction (try a larger -n)")
        if fit == "means":
            raw = dirs.difference_of_means(codes, positive)
        elif fit == "linear":
            raw = dirs.linear_direction(codes, positive)
        else:
            raise GankitError(f"--fit must be means or linear, got {fit!r}")
        d = dirs.unit(raw)
        return d, {"attribute": name, "method": method, "codes": how, "fit": fit, "n": len(codes),
                   "with_attribute": round(float(positive.float().sum()), 1), "raw_norm": float(raw.norm())}

    def attribute(self, names: Sequence[str], method: str = "classifier", fit: str = "means", n: int | None = None,
                  rows: int = 8, columns: int = 9, span: float = 3.0, check: int = 512,
                  features: str | Path | None = None) -> dict:
        """Attribute directions, montages of random codes offset along each (and along their sum), a
        walk from codes without the attribute to codes with it, and the check: the share of generated
        images the attribute network labels with the attribute, at each offset."""
        if not names:
            raise GankitError("attribute: name at least one attribute (e.g. Smiling)")
        found = {nm: self.direction(nm, method, fit, n, features) for nm in names}
        if len(names) > 1:
            total = dirs.unit(sum(d for d, _ in found.values()))
            found["+".join(names)] = (total, {"attribute": "+".join(names), "sum_of": list(names)})
        prior_codes = self.prior(4000, 7)
        amounts = torch.linspace(-span, span, columns, device=self.family.device)
        z_rows, z_check = self.prior(rows, 8), self.prior(check, 9)
        results, files = {}, []
        for key, (d, info) in found.items():
            sd = dirs.spread(prior_codes, d)
            steps = amounts * sd
            png = montage(self.montage_of(self.family.to_support(dirs.offsets(z_rows, d, steps))),
                          self.out_dir / f"attribute-{method}-{key}.png", title=f"{key}: random codes offset along the direction",
                          col_labels=[f"{a:+.1f}sd" for a in amounts.tolist()])
            files.append(str(png))
            # the check: share labelled with each named attribute, at each offset
            shifted = self.family.to_support(dirs.offsets(z_check, d, steps))
            probs, labels = self.attribute_probs(self.images(shifted), features)
            probs = probs.view(check, columns, -1)
            share = {a: (probs[:, :, labels.index(a)] > 0.5).float().mean(0).tolist()
                     for a in info.get("sum_of", [key])}
            mean_prob = {a: probs[:, :, labels.index(a)].mean(0).tolist() for a in share}
            results[key] = {**info, "sd": sd, "offsets_sd": amounts.tolist(), "share": share, "mean_prob": mean_prob,
                            "monotonic": {a: bool(np.all(np.diff(s) >= 0)) for a, s in share.items()}}
            if "sum_of" not in info:
                # a walk from neutral to the attribute: the check codes the network labels least with it
                p0 = probs[:, int(amounts.abs().argmin()), labels.index(key)]
                start = z_check[p0.argsort()[:rows]]
                walk = torch.linspace(0, span, columns, device=self.family.device) * sd
                png = montage(self.montage_of(self.family.to_support(dirs.offsets(start, d, walk))),
                              self.out_dir / f"attribute-{method}-{key}-walk.png",
                              title=f"from without {key} to with it", col_labels=[f"+{a / sd:.1f}sd" for a in walk.tolist()])
                files.append(str(png))
        files.append(str(self._share_plot(results, f"{method}-{'+'.join(names)}")))
        for key, (d, _) in found.items():  # the explorer's sliders reuse the directions
            torch.save({"direction": d, "sd": results[key]["sd"], "method": method, "fit": fit},
                       self.out_dir / f"direction-{key}.pt")
        return self.save(f"attribute-{method}-" + "+".join(names),
                         {"method": method, "fit": fit, "check_codes": check, "results": results, "files": files})

    def _share_plot(self, results: dict, tag: str) -> Path:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for key, r in results.items():
            for a, s in r["share"].items():
                style = "o-" if key == a else "s--"
                label = a if key == a else f"{a} along {key}"
                ax.plot(r["offsets_sd"], [100 * v for v in s], style, label=label)
        ax.set_xlabel("offset along the direction (standard deviations of the prior)")
        ax.set_ylabel("% labelled with the attribute")
        ax.set_ylim(0, 100)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        ax.set_title("share labelled by the attribute network")
        fig.tight_layout()
        out = self.out_dir / f"attribute-{tag}-share.png"
        save_figure(fig, out)
        return out

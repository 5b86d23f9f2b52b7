"""Convert an image source once into a memory-mappable uint8 array at the training resolution.

Output folder:
  images.npy      uint8 (N, H, W, 3), open with np.load(mmap_mode="r")
  meta.json       source, count, crop, resize filter, attribute / class names, skipped files
  files.txt       the source file (or row) of each image, one a line
  attrs.npy       int8 (N, A): +1 present, -1 absent, 0 unknown (CelebA, toyfaces)
  labels.npy      int16 (N,) class index (flowers, CIFAR-10, class folders)
  partition.npy   int8 (N,) 0 train / 1 val / 2 test / -1 unknown (CelebA, CIFAR-10)

The folder is written under a temporary name and renamed at the end, so an interrupted run leaves
no half-written dataset behind.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import time
from dataclasses import dataclass, field
from functools import partial
from multiprocessing import Pool
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..errors import GankitError
from . import toyfaces

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm"}
RESIZE_FILTER = "lanczos (Pillow, antialiased)"
SOURCES = ("celeba", "flowers", "cifar10", "folder", "toyfaces")
CELEBA_WIDTH = 178  # the aligned faces are 178 x 218
CELEBA_CROP = 108 / CELEBA_WIDTH  # DCGAN's 108-px centre crop of the 178-px-wide aligned faces


@dataclass
class Plan:
    """What to decode: one entry per image, plus the labels that go with them."""
    files: list[str]
    crop: str  # human-readable crop rule for the metadata
    crop_fraction: float | None = None  # side of the centre square as a fraction of the width; None = short side
    attrs: np.ndarray | None = None
    attr_names: list[str] | None = None
    labels: np.ndarray | None = None
    class_names: list[str] | None = None
    partition: np.ndarray | None = None
    notes: dict = field(default_factory=dict)
    arrays: np.ndarray | None = None  # in-memory uint8 NHWC source (CIFAR-10) instead of files
    generator: Callable | None = None  # draws image i (toyfaces)


# --- decoding (runs in worker processes) ----------------------------------------------------------

MAX_PIXELS = 50_000_000  # refuse larger images before decoding them (decompression bombs)
MIN_SIDE = 8  # refuse images whose short side is smaller: nothing to learn from a 1x1 thumbnail


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode as 8-bit RGB: 16-bit and float greys scaled (not clipped), transparency
    composited onto white, CMYK / palette / grey converted."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        im = Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
    return im.convert("RGB")


def celeba_crop_fraction(res: int) -> float:
    """CelebA's centre square as a fraction of the width: DCGAN's 108 of 178, widened to res of 178
    above 108 px, so the original aligned faces are never enlarged (128 px: 128 of 178, not 108
    enlarged). The same fraction for every copy of the set (the half-size one too), so the framing
    does not depend on the copy."""
    return max(CELEBA_CROP, res / CELEBA_WIDTH)


def crop_side(w: int, h: int, crop_fraction: float | None) -> int:
    """Side of the centre square: the short side, or crop_fraction x the width."""
    return min(w, h) if crop_fraction is None else min(w, h, round(w * crop_fraction))


def load_image(path: str, res: int, crop_fraction: float | None) -> np.ndarray:
    """Decode one file, take the centre square and resize it (antialiased) to res x res."""
    with Image.open(path) as im:
        w, h = im.size
        if w * h > MAX_PIXELS:
            raise ValueError(f"{w}x{h} px is over the {MAX_PIXELS // 1_000_000} megapixel limit (decompression bomb?)")
        if min(w, h) < MIN_SIDE:
            raise ValueError(f"{w}x{h} px is too small (short side under {MIN_SIDE} px)")
        side = crop_side(w, h, crop_fraction)
        if im.format == "JPEG" and side >= 4 * res:
            # let libjpeg decode at 1/2, 1/4 or 1/8 scale; keeps at least 2x the target size
            scale = 2 * res / side
            im.draft("RGB", (max(1, int(w * scale)), max(1, int(h * scale))))
        im = to_rgb(im)
        f = im.size[0] / w  # the draft scale
        cw, ch = im.size
        s = max(1, round(side * f))
        left, top = (cw - s) // 2, (ch - s) // 2
        # crop first, then resize: the filter must not reach pixels outside the crop
        im = im.crop((left, top, left + s, top + s)).resize((res, res), Image.LANCZOS)
        arr = np.asarray(im, dtype=np.uint8)
    if arr.shape != (res, res, 3):
        raise ValueError(f"decoded to shape {arr.shape}")
    return arr


def _crop_record(plan, res: int) -> dict:
    """The crop of the first image in pixels, and whether it was enlarged to res (for meta.json)."""
    if plan.arrays is not None or plan.generator is not None or not plan.files:
        return {}
    try:
        with Image.open(plan.files[0]) as im:
            w, h = im.size
    except Exception:
        return {}
    side = crop_side(w, h, plan.crop_fraction)
    return {"crop_px": f"{side}x{side} of {w}x{h}", "upsampled": side < res}


def skip_reasons(skipped: list[dict]) -> dict[str, int]:
    """How many files were skipped for each kind of error (the error's type name)."""
    counts: dict[str, int] = {}
    for s in skipped:
        kind = s["error"].split(":", 1)[0]
        counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _decode(args: tuple[int, str], res: int, crop_fraction: float | None):
    i, path = args
    try:
        return i, load_image(path, res, crop_fraction), None
    except Exception as e:  # any undecodable file is skipped and reported, never fatal
        return i, None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]


def _draw(args: tuple[int, str], res: int):
    j, name = args
    return j, toyfaces.draw_face(int(name.split("#")[1]), res)[0], None


# --- sources ------------------------------------------------------------------------------------

def list_images(root: Path) -> list[str]:
    """Every image file under root, recursively, in a stable order; symlinked folders are not followed."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            if Path(name).suffix.lower() in IMAGE_EXTS:
                out.append(os.path.join(dirpath, name))
    return out


def _need_dir(path: Path, what: str) -> Path:
    if not path.exists():
        raise GankitError(f"{what}: {path} does not exist")
    if not path.is_dir():
        raise GankitError(f"{what}: {path} is not a folder")
    return path


def plan_folder(paths: list[Path], **_) -> Plan:
    files: list[str] = []
    for p in paths:
        files += list_images(_need_dir(p, "folder"))
    if not files:
        raise GankitError(f"folder: no images ({', '.join(sorted(IMAGE_EXTS))}) under {', '.join(map(str, paths))}")
    plan = Plan(files=files, crop="centre square of the short side")
    # images grouped one folder deep become classes
    if len(paths) == 1:
        parents = [Path(f).parent for f in files]
        if all(p.parent == paths[0] for p in parents) and len(set(parents)) > 1:
            names = sorted({p.name for p in parents})
            index = {n: i for i, n in enumerate(names)}
            plan.labels = np.array([index[p.name] for p in parents], dtype=np.int16)
            plan.class_names = names
    return plan


def read_celeba_attributes(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """Parse list_attr_celeba.txt. The count on line 1 is not trusted: rows are read until the end."""
    lines = path.read_text(errors="replace").splitlines()
    if len(lines) < 2:
        raise GankitError(f"{path}: expected a count line and a line of attribute names")
    names = lines[1].split()
    rows: dict[str, np.ndarray] = {}
    for n, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1:
            raise GankitError(f"{path}:{n}: expected a file name and {len(names)} values, got {len(parts)} fields")
        try:
            rows[parts[0]] = np.array([1 if int(v) > 0 else -1 for v in parts[1:]], dtype=np.int8)
        except ValueError:
            raise GankitError(f"{path}:{n}: attribute values must be integers") from None
    return names, rows


def read_celeba_partition(path: Path) -> dict[str, int]:
    out = {}
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise GankitError(f"{path}:{n}: expected 'NAME.jpg 0|1|2'")
        out[parts[0]] = int(parts[1])
    return out


def plan_celeba(paths: list[Path], images: str | None = None, res: int = 64, **_) -> Plan:
    if len(paths) != 1:
        raise GankitError("celeba: give one path (the CelebA folder or its img_align_celeba folder)")
    root = _need_dir(paths[0], "celeba")
    if images:
        img_dir = _need_dir(root / images, "celeba --images")
    else:
        # the folder itself or its img_align_celeba* subfolder with the most JPEGs
        candidates = [root] + sorted(p for p in root.glob("img_align_celeba*") if p.is_dir())
        counts = {c: sum(1 for f in os.scandir(c) if f.name.lower().endswith(".jpg")) for c in candidates}
        img_dir = max(candidates, key=lambda c: counts[c])
        if counts[img_dir] == 0:
            raise GankitError(f"celeba: no .jpg images in {root} or its img_align_celeba* folders")
    files = sorted(str(img_dir / f.name) for f in os.scandir(img_dir) if f.name.lower().endswith(".jpg"))
    fraction = celeba_crop_fraction(res)
    plan = Plan(files=files, crop=f"centre square {fraction:.4f} x width ({round(fraction * CELEBA_WIDTH)} px of "
                                  f"{CELEBA_WIDTH}: DCGAN's 108, widened to the output size above it)",
                crop_fraction=fraction, notes={"images_dir": str(img_dir)})
    names = [Path(f).name for f in files]
    for folder in (img_dir, img_dir.parent):
        attr_file = folder / "list_attr_celeba.txt"
        if attr_file.exists():
            attr_names, rows = read_celeba_attributes(attr_file)
            missing = [n for n in names if n not in rows]
            plan.attr_names = attr_names
            plan.attrs = np.stack([rows.get(n, np.zeros(len(attr_names), np.int8)) for n in names])
            plan.notes["attributes_file"] = str(attr_file)
            plan.notes["attributes_rows"] = len(rows)
            plan.notes["images_without_attributes"] = len(missing)
            break
    for folder in (img_dir, img_dir.parent):
        part_file = folder / "list_eval_partition.txt"
        if part_file.exists():
            part = read_celeba_partition(part_file)
            plan.partition = np.array([part.get(n, -1) for n in names], dtype=np.int8)
            plan.notes["partition_file"] = str(part_file)
            break
    return plan


def plan_flowers(paths: list[Path], **_) -> Plan:
    """Oxford 17 (class folders, or flat image_NNNN.jpg with class (N-1)//80) and 102 (jpg/ + imagelabels.mat)."""
    files: list[str] = []
    labels: list[int] = []
    class_names: list[str] = []
    for root in paths:
        root = _need_dir(root, "flowers")
        mat = root / "imagelabels.mat"
        img_root = root / "jpg" if (root / "jpg").is_dir() else root
        found = list_images(img_root)
        if not found:
            raise GankitError(f"flowers: no images under {img_root}")
        offset = len(class_names)
        if mat.exists():  # Oxford 102
            from scipy.io import loadmat
            try:
                lab = np.asarray(loadmat(mat)["labels"]).ravel().astype(int)  # 1..102 for image_00001..
            except Exception as e:
                raise GankitError(f"flowers: cannot read {mat}: {type(e).__name__}: {e}") from None
            if lab.size == 0 or lab.min() < 1:
                raise GankitError(f"flowers: {mat} holds no labels 1..N")
            for f in found:
                m = re.search(r"image_(\d+)", Path(f).name)
                if m and 1 <= int(m.group(1)) <= len(lab):
                    files.append(f)
                    labels.append(offset + lab[int(m.group(1)) - 1] - 1)
            class_names += [f"flowers102/{i}" for i in range(1, int(lab.max()) + 1)]
        else:  # Oxford 17
            for f in found:
                parent = Path(f).parent
                if parent != img_root and parent.name.isdigit():
                    cls = int(parent.name)
                else:
                    m = re.search(r"image_(\d+)", Path(f).name)
                    if not m:
                        continue
                    cls = (int(m.group(1)) - 1) // 80
                files.append(f)
                labels.append(offset + cls)
            class_names += [f"flowers17/{i}" for i in range(17)]
    if not files:
        raise GankitError(f"flowers: no image_NNNN files under {', '.join(map(str, paths))}")
    return Plan(files=files, crop="centre square of the short side",
                labels=np.array(labels, dtype=np.int16), class_names=class_names)


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """CIFAR-10's python batches are pickles; allow only what they contain, never arbitrary code."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("builtins", "list"), ("builtins", "dict")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def plan_cifar10(paths: list[Path], **_) -> Plan:
    if len(paths) != 1:
        raise GankitError("cifar10: give one path (cifar-10-batches-py folder or an .npz)")
    p = paths[0]
    if not p.exists():
        raise GankitError(f"cifar10: {p} does not exist")
    xs, ys, parts = [], [], []
    if p.is_dir() and (p / "data_batch_1").exists():
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        for name in names:
            f = p / name
            if not f.exists():
                continue
            try:
                with open(f, "rb") as fh:
                    d = _ArrayOnlyUnpickler(fh, encoding="bytes").load()
                x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
                y = np.asarray(d[b"labels"], dtype=np.int16)
            except Exception as e:
                raise GankitError(f"cifar10: cannot read {f}: {type(e).__name__}: {e}") from None
            if len(x) != len(y):
                raise GankitError(f"cifar10: {f} has {len(x)} images but {len(y)} labels")
            xs.append(x); ys.append(y); parts.append(np.full(len(x), 2 if name == "test_batch" else 0, np.int8))
        class_names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    else:
        npz = p if p.is_file() else next(iter(sorted(p.glob("*.npz"))), None)
        if npz is None:
            raise GankitError(f"cifar10: {p} has neither data_batch_1 nor an .npz file")
        try:
            d = np.load(npz, allow_pickle=False)
        except Exception as e:
            raise GankitError(f"cifar10: cannot read {npz}: {type(e).__name__}: {e}") from None
        pairs = [("x_train", "y_train", 0), ("x_test", "y_test", 2), ("x", "y", -1), ("data", "labels", -1)]
        for xk, yk, part in pairs:
            if xk in d.files:
                x = np.asarray(d[xk])
                if x.dtype != np.uint8:
                    raise GankitError(f"cifar10: {npz}[{xk}] must be uint8, is {x.dtype}")
                if x.ndim == 2 and x.shape[1] == 3072:
                    x = x.reshape(-1, 3, 32, 32)
                if x.ndim == 4 and x.shape[1] == 3 and x.shape[3] != 3:
                    x = x.transpose(0, 2, 3, 1)
                if x.ndim != 4 or x.shape[3] != 3:
                    raise GankitError(f"cifar10: {npz}[{xk}] has shape {x.shape}, expected (N, 32, 32, 3)")
                y = np.asarray(d[yk], dtype=np.int16) if yk in d.files else np.full(len(x), -1, np.int16)
                xs.append(x); ys.append(y); parts.append(np.full(len(x), part, np.int8))
        if not xs:
            raise GankitError(f"cifar10: {npz} has none of the arrays x_train, x_test, x, data")
        class_names = [str(s) for s in d["label_names"]] if "label_names" in d.files else None
    x = np.concatenate(xs)
    return Plan(files=[f"{p}#{i}" for i in range(len(x))], crop="none (32x32 source)", arrays=x,
                labels=np.concatenate(ys), class_names=class_names, partition=np.concatenate(parts))


def plan_toyfaces(paths: list[Path], count: int = 10_000, **_) -> Plan:
    attrs = np.stack([toyfaces.face_attributes(i) for i in range(count)])
    return Plan(files=[f"toyfaces#{i}" for i in range(count)], crop="none (drawn at 128 px)",
                attrs=attrs, attr_names=list(toyfaces.ATTRIBUTES), generator=_draw)


PLANNERS = {"celeba": plan_celeba, "flowers": plan_flowers, "cifar10": plan_cifar10,
            "folder": plan_folder, "toyfaces": plan_toyfaces}


# --- the conversion -----------------------------------------------------------------------------

def prepare(source: str, paths: Iterable[str | Path], res: int, out: str | Path, *, limit: int | None = None,
            workers: int | None = None, overwrite: bool = False, images: str | None = None,
            count: int = 10_000, progress: bool = True) -> dict:
    """Convert `source` at `paths` into a prepared dataset folder `out`; returns its metadata."""
    if source not in PLANNERS:
        raise GankitError(f"unknown source {source!r}; one of {', '.join(SOURCES)}")
    if res not in (32, 64, 128):
        raise GankitError(f"--res must be 32, 64 or 128, got {res}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise GankitError(f"{out} already exists (pass --overwrite to replace it)")
    paths = [Path(p) for p in paths]
    plan = PLANNERS[source](paths, images=images, count=count, res=res)
    n_all = len(plan.files)
    keep = np.arange(n_all if limit is None else min(limit, n_all))
    t0 = time.time()

    tmp = out.with_name(out.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        arr = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(len(keep), res, res, 3))
        ok = np.zeros(len(keep), dtype=bool)
        skipped: list[dict] = []
        bar = tqdm(total=len(keep), desc=f"prepare {source}", unit="img", disable=not progress, mininterval=0.5)
        if plan.arrays is not None:
            for j, i in enumerate(keep):
                x = plan.arrays[i]
                arr[j] = x if x.shape[0] == res else np.asarray(Image.fromarray(x).resize((res, res), Image.LANCZOS))
                ok[j] = True
            bar.update(len(keep))
        else:
            fn = (partial(plan.generator, res=res) if plan.generator is not None
                  else partial(_decode, res=res, crop_fraction=plan.crop_fraction))
            items = [(int(j), plan.files[i]) for j, i in enumerate(keep)]
            nproc = workers or os.cpu_count() or 1
            results = map(fn, items) if nproc == 1 else None
            pool = Pool(nproc) if nproc > 1 else None
            try:
                if pool is not None:
                    results = pool.imap_unordered(fn, items, chunksize=32)
                for j, img, err in results:
                    if err is None:
                        arr[j] = img
                        ok[j] = True
                    else:
                        skipped.append({"file": plan.files[keep[j]], "error": err})
                    bar.update(1)
            finally:
                if pool is not None:
                    pool.close(); pool.join()
        bar.close()

        good = keep[ok]
        if len(good) == 0:
            raise GankitError(f"{source}: none of the {len(keep)} images could be decoded "
                              f"(first error: {skipped[0]['error'] if skipped else 'none'})")
        if len(good) < len(keep):  # compact the array: skipped rows are dropped
            final = np.lib.format.open_memmap(tmp / "images.tmp.npy", mode="w+", dtype=np.uint8,
                                              shape=(len(good), res, res, 3))
            final[:] = arr[ok]
            final.flush(); del final, arr
            os.replace(tmp / "images.tmp.npy", tmp / "images.npy")
        else:
            arr.flush(); del arr

        (tmp / "files.txt").write_text("\n".join(plan.files[i] for i in good) + "\n")
        if plan.attrs is not None:
            np.save(tmp / "attrs.npy", plan.attrs[good])
        if plan.labels is not None:
            np.save(tmp / "labels.npy", plan.labels[good])
        if plan.partition is not None:
            np.save(tmp / "partition.npy", plan.partition[good])
        skipped.sort(key=lambda s: s["file"])
        meta = {
            "format": "gankit-prepared-1",
            "source": source,
            "paths": [str(p.resolve()) for p in paths],
            "count": int(len(good)),
            "res": res,
            "crop": plan.crop,
            **_crop_record(plan, res),
            "resize_filter": RESIZE_FILTER if plan.arrays is None or res != 32 else "none",
            "attributes": plan.attr_names,
            "classes": plan.class_names,
            "has_partition": plan.partition is not None,
            "skipped_count": len(skipped),
            "skipped_by_reason": skip_reasons(skipped),
            "skipped": skipped,
            "limit": limit,
            "seconds": round(time.time() - t0, 2),
            **plan.notes,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        if out.exists():
            old = out.with_name(out.name + f".old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta

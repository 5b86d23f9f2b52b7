"""The embedded default dataset: procedurally drawn cartoon faces with labelled attributes.

No download and no ../shared needed. The attributes use CelebA's names, so the attribute tools
built for CelebA can be tested here against labels that are known exactly.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

ATTRIBUTES = ("Smiling", "Eyeglasses", "Mustache", "Wearing_Lipstick", "Bangs",
              "Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")
HAIR = {"Black_Hair": (30, 25, 25), "Blond_Hair": (225, 190, 95),
        "Brown_Hair": (110, 65, 35), "Gray_Hair": (165, 165, 170)}
SKIN = ((250, 215, 185), (235, 190, 150), (200, 150, 110), (150, 100, 70), (105, 70, 50))
CANVAS = 128


def _draw_attributes(rng: np.random.Generator) -> dict[str, bool]:
    attrs = {a: False for a in ATTRIBUTES}
    attrs["Smiling"] = rng.random() < 0.5
    attrs["Eyeglasses"] = rng.random() < 0.3
    attrs["Mustache"] = rng.random() < 0.2
    attrs["Wearing_Lipstick"] = (not attrs["Mustache"]) and rng.random() < 0.4
    attrs["Bangs"] = rng.random() < 0.35
    hair_name = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")[rng.integers(4)]
    attrs[hair_name] = True
    return attrs


def face_attributes(seed: int) -> np.ndarray:
    """The attributes of face `seed` as int8 (+1 present, -1 absent), without drawing it."""
    attrs = _draw_attributes(np.random.default_rng(seed))
    return np.array([1 if attrs[a] else -1 for a in ATTRIBUTES], dtype=np.int8)


def draw_face(seed: int, res: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """One face as uint8 (res, res, 3) and its attributes as int8 (+1 present, -1 absent)."""
    rng = np.random.default_rng(seed)
    attrs = _draw_attributes(rng)
    hair_name = next(h for h in HAIR if attrs[h])
    def jitter(c, amount=18):
        return tuple(int(np.clip(v + rng.integers(-amount, amount + 1), 0, 255)) for v in c)

    bg = tuple(int(v) for v in rng.integers(60, 240, size=3))
    img = Image.new("RGB", (CANVAS, CANVAS), bg)
    d = ImageDraw.Draw(img)
    cx = CANVAS / 2 + rng.normal(0, 4)
    cy = CANVAS / 2 + 6 + rng.normal(0, 3)
    fw = rng.uniform(34, 42)  # half width of the face
    fh = fw * rng.uniform(1.2, 1.35)
    skin = jitter(SKIN[rng.integers(len(SKIN))], 10)
    hair = jitter(HAIR[hair_name], 12)

    # hair behind the head, then neck and shoulders, then the face
    d.ellipse([cx - fw - 9, cy - fh - 12, cx + fw + 9, cy + fh * rng.uniform(0.3, 0.9)], fill=hair)
    d.rectangle([cx - fw * 0.35, cy + fh * 0.7, cx + fw * 0.35, CANVAS], fill=skin)
    d.ellipse([cx - fw * 1.6, cy + fh * 0.95, cx + fw * 1.6, cy + fh * 2.2], fill=jitter((70, 90, 140), 60))
    d.ellipse([cx - fw, cy - fh, cx + fw, cy + fh], fill=skin)
    # top of the hair over the forehead; bangs come lower
    fringe = cy - fh * (0.25 if attrs["Bangs"] else 0.62)
    d.chord([cx - fw - 3, cy - fh - 10, cx + fw + 3, fringe + (fringe - (cy - fh - 10))], 180, 360, fill=hair)

    eye_y = cy - fh * 0.12
    eye_dx = fw * 0.42
    gaze = rng.uniform(-1.5, 1.5)
    for side in (-1, 1):
        ex = cx + side * eye_dx
        d.ellipse([ex - 7, eye_y - 4.5, ex + 7, eye_y + 4.5], fill=(250, 250, 250))
        d.ellipse([ex - 3 + gaze, eye_y - 3.5, ex + 3 + gaze, eye_y + 3.5], fill=jitter((60, 45, 30), 30))
        d.line([ex - 8, eye_y - 9, ex + 8, eye_y - 10], fill=hair, width=3)  # eyebrow
        if attrs["Eyeglasses"]:
            d.ellipse([ex - 11, eye_y - 9, ex + 11, eye_y + 9], outline=(20, 20, 20), width=3)
    if attrs["Eyeglasses"]:
        d.line([cx - eye_dx + 11, eye_y, cx + eye_dx - 11, eye_y], fill=(20, 20, 20), width=3)

    nose_y = cy + fh * 0.2
    d.line([cx, eye_y + 4, cx - 3, nose_y, cx + 2, nose_y], fill=tuple(int(v * 0.8) for v in skin), width=2)

    mouth_y = cy + fh * 0.48
    mw = fw * rng.uniform(0.38, 0.5)
    lips = (200, 30, 60) if attrs["Wearing_Lipstick"] else tuple(int(v * 0.72) for v in skin)
    if attrs["Smiling"]:
        d.chord([cx - mw, mouth_y - 9, cx + mw, mouth_y + 9], 0, 180, fill=(120, 20, 30), outline=lips, width=3)
        d.rectangle([cx - mw * 0.6, mouth_y, cx + mw * 0.6, mouth_y + 3], fill=(250, 250, 250))
    else:
        d.line([cx - mw * 0.85, mouth_y + 2, cx + mw * 0.85, mouth_y + 2], fill=lips, width=4)
    if attrs["Mustache"]:
        d.polygon([(cx - mw, mouth_y - 3), (cx, mouth_y - 10), (cx + mw, mouth_y - 3), (cx, mouth_y - 5)], fill=hair)

    out = np.asarray(img.resize((res, res), Image.LANCZOS), dtype=np.uint8)
    return out, np.array([1 if attrs[a] else -1 for a in ATTRIBUTES], dtype=np.int8)

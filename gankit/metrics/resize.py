"""How images reach the Inception network's 299 x 299 input.

legacy  pytorch-fid's: the network's own bilinear `F.interpolate` without antialiasing (the default;
        bit-identical to pytorch-fid, so FID equals the numbers papers quote from it).
clean   clean-fid's (Parmar et al. 2022): each channel resized as a float32 image by PIL's bicubic filter,
        which antialiases when shrinking, then clipped to [0, 255]; the network's interpolate is then the
        identity (299 -> 299).
"""
from __future__ import annotations

import numpy as np
from PIL import Image

RESIZES = ("legacy", "clean")
INCEPTION_SIZE = 299


def clean_resize(u8: np.ndarray, size: int = INCEPTION_SIZE) -> np.ndarray:
    """uint8 NHWC -> float32 NHWC in [0, 255] at size x size, clean-fid's resize."""
    out = np.empty((len(u8), size, size, u8.shape[-1]), dtype=np.float32)
    for i, image in enumerate(u8):
        for c in range(image.shape[-1]):
            channel = Image.fromarray(image[:, :, c].astype(np.float32), mode="F")
            out[i, :, :, c] = np.asarray(channel.resize((size, size), resample=Image.BICUBIC))
    return np.clip(out, 0, 255, out=out)

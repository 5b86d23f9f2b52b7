"""Batched feature extraction from uint8 images: inference mode, channels-last, optional bf16."""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch import nn


def image_batches(images: np.ndarray, batch: int) -> Iterable[np.ndarray]:
    for i in range(0, len(images), batch):
        yield images[i:i + batch]


@torch.inference_mode()
def extract_features(net: nn.Module, batches: Iterable[np.ndarray], device: str | torch.device = "cpu",
                     bf16: bool = False, channels_last: bool = True) -> np.ndarray:
    """Features (float64, N x d) of uint8 NHWC batches, fed to `net` as floats in [0, 1] (x / 255)."""
    device = torch.device(device)
    net = net.to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    out = []
    for u8 in batches:
        x = torch.from_numpy(np.array(u8, copy=True)).to(device).permute(0, 3, 1, 2).float().div_(255)
        x = x if channels_last else x.contiguous()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            f = net(x)
        out.append(f.float().cpu().numpy().astype(np.float64))
    return np.concatenate(out) if out else np.zeros((0, 0))

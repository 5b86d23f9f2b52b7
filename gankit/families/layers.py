"""Drop-in Conv2d / ConvTranspose2d whose weight gradient is one matmul where that is faster on CPU.

oneDNN's weight-gradient kernel is slow when the feature map is tiny: for DCGAN's 8x8 -> 4x4 layers
at batch 128 it takes 4-5x the forward time in bf16 on a Zen 4 core, where an im2col matmul takes
about the forward time (BENCHMARKS.md). These layers keep torch.nn's parameters, state-dict keys and
forward; only on CPU, with gradients on and a small side of at most SMALL positions, the backward
computes the weight gradient as grad_out^T @ im2col(input). The input gradient and the bias
gradient stay oneDNN's. The backward is built from differentiable ops, so the gradient penalty's
double backward works through it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SMALL = 16  # positions (H*W) of the smaller feature map at or below which the matmul path is used


def weight_grad(grad_out: torch.Tensor, inp: torch.Tensor, k: int, stride: int, padding: int) -> torch.Tensor:
    """dL/dW of y = conv2d(inp, W, stride, padding): (C_out, C_in, k, k) = grad_out^T @ im2col(inp)."""
    n, c, _, _ = inp.shape
    ho, wo = grad_out.shape[2:]
    x = F.pad(inp, (padding,) * 4).permute(0, 2, 3, 1)  # NHWC (a view when inp is channels-last)
    cols = torch.stack([x[:, i:i + stride * ho:stride, j:j + stride * wo:stride, :]
                        for i in range(k) for j in range(k)], 3).reshape(n * ho * wo, k * k * c)
    g = grad_out.permute(0, 2, 3, 1).reshape(n * ho * wo, -1)
    return (g.t() @ cols).view(-1, k, k, c).permute(0, 3, 1, 2)


class _ConvMatmulWeightGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, stride, padding, transposed, output_padding):
        ctx.save_for_backward(x, w)
        ctx.conf = (stride, padding, transposed, output_padding, b is not None)
        return torch.ops.aten.convolution(x, w, b, [stride] * 2, [padding] * 2, [1, 1], transposed,
                                          [output_padding] * 2, 1)

    @staticmethod
    def backward(ctx, grad_out):
        x, w = ctx.saved_tensors
        stride, padding, transposed, output_padding, has_bias = ctx.conf
        grad_out = grad_out.to(x.dtype)
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        gx, _, gb = torch.ops.aten.convolution_backward(
            grad_out, x, w, [w.shape[1] if transposed else w.shape[0]] if has_bias else None,
            [stride] * 2, [padding] * 2, [1, 1], transposed, [output_padding] * 2, 1,
            [need_x, False, need_b and has_bias])
        gw = None
        if need_w:  # a transposed conv is the adjoint of a conv: the roles of input and output swap
            k = w.shape[2]
            gw = (weight_grad(x, grad_out, k, stride, padding) if transposed
                  else weight_grad(grad_out, x, k, stride, padding))
        return gx, gw, gb, None, None, None, None


def _use_matmul_path(x: torch.Tensor, w: torch.Tensor, small_side: int) -> bool:
    return (x.device.type == "cpu" and torch.is_grad_enabled() and w.requires_grad and small_side <= SMALL)


def _autocast(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Cast as CPU autocast would for a convolution, since the Function runs outside its dispatch."""
    if torch.is_autocast_enabled("cpu"):
        dtype = torch.get_autocast_dtype("cpu")
        return tuple(t.to(dtype) if t is not None and t.is_floating_point() else t for t in tensors)
    return tensors


class Conv2d(nn.Conv2d):
    """nn.Conv2d (square kernel, stride and padding; no dilation or groups) with the matmul weight gradient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ho = (x.shape[2] + 2 * self.padding[0] - self.kernel_size[0]) // self.stride[0] + 1
        wo = (x.shape[3] + 2 * self.padding[1] - self.kernel_size[1]) // self.stride[1] + 1
        if not _use_matmul_path(x, self.weight, ho * wo):
            return super().forward(x)
        x_, w_, b_ = _autocast(x, self.weight, self.bias)
        with torch.autocast("cpu", enabled=False):
            return _ConvMatmulWeightGrad.apply(x_, w_, b_, self.stride[0], self.padding[0], False, 0)


class ConvTranspose2d(nn.ConvTranspose2d):
    """nn.ConvTranspose2d (square kernel, stride and padding) with the matmul weight gradient."""

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        if output_size is not None or not _use_matmul_path(x, self.weight, x.shape[2] * x.shape[3]):
            return super().forward(x, output_size)
        x_, w_, b_ = _autocast(x, self.weight, self.bias)
        with torch.autocast("cpu", enabled=False):
            return _ConvMatmulWeightGrad.apply(x_, w_, b_, self.stride[0], self.padding[0], True,
                                               self.output_padding[0])

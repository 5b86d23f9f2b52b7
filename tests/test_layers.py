"""The matmul weight-gradient layers equal torch.nn's, in value and in gradients (double backward too)."""
import pytest
import torch
from torch import nn

from gankit.families import layers


def pair(cls_fast, cls_ref, *args, **kw):
    torch.manual_seed(0)
    fast = cls_fast(*args, **kw)
    ref = cls_ref(*args, **kw)
    ref.load_state_dict(fast.state_dict())
    return fast, ref


@pytest.mark.parametrize("make,shape", [
    (lambda c: (layers.Conv2d, nn.Conv2d, 6, 10, 3, 2, 1), (4, 6, 8, 8)),  # 8x8 -> 4x4
    (lambda c: (layers.Conv2d, nn.Conv2d, 6, 1, 4, 1, 0), (4, 6, 4, 4)),  # k4 critic head 4x4 -> 1x1
    (lambda c: (layers.ConvTranspose2d, nn.ConvTranspose2d, 6, 5, 3, 2, 1, 1), (4, 6, 4, 4)),  # 4x4 -> 8x8
    (lambda c: (layers.ConvTranspose2d, nn.ConvTranspose2d, 7, 5, 4, 1, 0), (4, 7, 1, 1)),  # z 1x1 -> 4x4
    (lambda c: (layers.ConvTranspose2d, nn.ConvTranspose2d, 6, 5, 4, 2, 1), (4, 6, 4, 4)),  # k4 up
])
@pytest.mark.parametrize("channels_last", [False, True])
def test_gradients_match_torch(make, shape, channels_last):
    cf, cr, *args = make(None)
    fast, ref = pair(cf, cr, *args)
    x = torch.randn(*shape, dtype=torch.float64)
    fast.double(); ref.double()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    xs = [x.clone().requires_grad_(True) for _ in range(2)]
    outs = [m(xi) for m, xi in zip((fast, ref), xs)]
    assert torch.allclose(outs[0], outs[1])
    g = torch.randn_like(outs[0])
    for o in outs:
        o.backward(g)
    assert torch.allclose(xs[0].grad, xs[1].grad)
    assert torch.allclose(fast.weight.grad, ref.weight.grad)
    assert torch.allclose(fast.bias.grad, ref.bias.grad)


def test_double_backward_matches_torch():
    """The gradient penalty differentiates the input gradient with respect to the weights."""
    fast, ref = pair(layers.Conv2d, nn.Conv2d, 3, 4, 3, 2, 1)
    grads = []
    for m in (fast, ref):
        m.double()
        x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
        (gx,) = torch.autograd.grad(torch.tanh(m(x)).sum(), x, create_graph=True)
        gx.pow(2).sum().backward()
        grads.append(m.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1])


def test_bf16_autocast_close_to_fp32():
    fast, ref = pair(layers.Conv2d, nn.Conv2d, 16, 32, 3, 2, 1)
    x = torch.randn(8, 16, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = fast(x)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    ref(x).sum().backward()
    err = (fast.weight.grad - ref.weight.grad).norm() / ref.weight.grad.norm()
    assert fast.weight.grad.dtype == torch.float32 and err < 2e-2

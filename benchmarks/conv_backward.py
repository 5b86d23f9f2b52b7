"""Per-layer cost of DCGAN-64's convolutions: forward, input gradient, weight gradient (oneDNN)
and the im2col + matmul weight gradient of gankit/families/layers.py. bf16, channels-last, batch 128.

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/conv_backward.py
"""
import time

import torch

from gankit.families.layers import weight_grad


def ms(f, n=3):
    f()
    t0 = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t0) / n * 1e3


def main(batch=128, dtype=torch.bfloat16):
    print(f"threads {torch.get_num_threads()}, {dtype}, batch {batch}")
    print(f"{'layer':34s} {'fwd':>6s} {'dgrad':>6s} {'wgrad':>6s} {'wgrad-mm':>8s}")
    for cin, cout, hw, transposed in [(512, 1024, 8, False), (256, 512, 16, False), (128, 256, 32, False),
                                      (1024, 512, 4, True), (512, 256, 8, True)]:
        x = torch.randn(batch, cin, hw, hw, dtype=dtype).contiguous(memory_format=torch.channels_last)
        shape = (cin, cout, 3, 3) if transposed else (cout, cin, 3, 3)
        w = torch.randn(shape, dtype=dtype).contiguous(memory_format=torch.channels_last)
        conf = ([2, 2], [1, 1], [1, 1], transposed, [1, 1] if transposed else [0, 0], 1)
        y = torch.ops.aten.convolution(x, w, None, *conf)
        go = torch.randn_like(y)
        fwd = ms(lambda: torch.ops.aten.convolution(x, w, None, *conf))
        dgrad = ms(lambda: torch.ops.aten.convolution_backward(go, x, w, None, *conf, [True, False, False]))
        wgrad = ms(lambda: torch.ops.aten.convolution_backward(go, x, w, None, *conf, [False, True, False]))
        mm = ms(lambda: weight_grad(x, go, 3, 2, 1) if transposed else weight_grad(go, x, 3, 2, 1))
        name = f"{'tconv' if transposed else 'conv'} {cin}->{cout} at {hw}x{hw} in"
        print(f"{name:34s} {fwd:6.0f} {dgrad:6.0f} {wgrad:6.0f} {mm:8.0f}")


if __name__ == "__main__":
    main()

"""LeNet-5 train step, float32 (issue #15): batch 64 of 1x28x28, conv 5x5 to 20 maps,
max-pool 2, tanh, conv 5x5 to 50 maps, max-pool 2, tanh, dense 800 -> 500 tanh,
dense 500 -> 10, softmax cross-entropy mean, SGD.

Then a ResNet block's train step, float32: batch 32 of 64x32x32, conv 3x3 (64 -> 64,
padding 1, no bias), batch norm (training: batch statistics, running ones updated),
relu, conv 3x3, batch norm, plus the block's input, relu; the mean of the squared
output as the loss, SGD on both convolutions and batch norms; against PyTorch eager
(``nn.Conv2d``, ``nn.BatchNorm2d`` in train mode), the ratio symgrad / PyTorch.

Reports the symgrad step, the im2col floor (the step's matrix products alone through
NumPy into preallocated outputs: each convolution as its im2col product, forward,
weight gradient, and input gradient except for the first layer) and, where installed,
PyTorch eager and JAX ``jit``, with the ratios to the floor; once per thread count (1,
then every core). Every peer's first step must give symgrad's first loss (same
parameters, same batch), or the script stops.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_cnn.py
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import best_time, cores, rng, run_per_thread_count, start_child, table  # noqa: E402

import symgrad as sg  # noqa: E402

N = 64
LR = np.float32(0.1)
SHAPES = [(20, 1, 5, 5), (20,), (50, 20, 5, 5), (50,), (800, 500), (500,), (500, 10), (10,)]


def init(r):
    out = []
    for s in SHAPES:
        fan_in = int(np.prod(s[1:])) if len(s) == 4 else s[0]
        bound = np.float32(1 / np.sqrt(fan_in if len(s) != 1 else 100))
        out.append(r.uniform(-bound, bound, s).astype("float32"))
    return out


def symgrad_step(params):
    X = sg.tensor4("X", dtype="float32")
    y = sg.vector("y", dtype="int64")
    w1, b1, w2, b2, W3, b3, W4, b4 = ps = [sg.shared(p, name=f"p{i}")
                                           for i, p in enumerate(params)]
    h = sg.tanh(sg.nn.max_pool2d(sg.nn.conv2d(X, w1, b1), 2))
    h = sg.tanh(sg.nn.max_pool2d(sg.nn.conv2d(h, w2, b2), 2))
    h = sg.tanh(h.reshape((h.shape[0], 800)) @ W3 + b3)
    loss = sg.nn.cross_entropy(h @ W4 + b4, y).mean()
    grads = sg.grad(loss, ps)
    return sg.function([X, y], loss, updates=[(p, p - LR * g) for p, g in zip(ps, grads)])


def im2col_floor(params):
    """The step's matrix products alone (the convolutions as their im2col products)."""
    r = rng(1)
    f32 = "float32"

    def mat(*s):
        return r.standard_normal(s).astype(f32)

    fwd = [(mat(N * 576, 25), mat(25, 20)), (mat(N * 64, 500), mat(500, 50)),
           (mat(N, 800), mat(800, 500)), (mat(N, 500), mat(500, 10))]
    # weight gradients: cols.T @ g; input gradients: g @ W.T (not for the first layer)
    wgr = [(a.T, mat(a.shape[0], b.shape[1])) for a, b in fwd]
    igr = [(mat(*p[0].shape[:1], p[1].shape[1]), p[1].T) for p in fwd[1:]]
    work = [(a, b, np.empty((a.shape[0], b.shape[1]), f32)) for a, b in fwd + wgr + igr]

    def run():
        for a, b, c in work:
            np.matmul(a, b, out=c)

    return run


def torch_step(params):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(int(os.environ.get("SYMGRAD_NUM_THREADS", "1")))
    F = torch.nn.functional
    ps = [torch.tensor(p, requires_grad=True) for p in params]
    opt = torch.optim.SGD(ps, lr=float(LR))

    def step(X, y):
        X, y = torch.from_numpy(X), torch.from_numpy(y)
        w1, b1, w2, b2, W3, b3, W4, b4 = ps
        h = torch.tanh(F.max_pool2d(F.conv2d(X, w1, b1), 2))
        h = torch.tanh(F.max_pool2d(F.conv2d(h, w2, b2), 2))
        h = torch.tanh(h.reshape(h.shape[0], 800) @ W3 + b3)
        loss = F.cross_entropy(h @ W4 + b4, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def jax_step(params):
    """The same step as one ``jax.jit`` function (parameters donated, updated in place)."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    lax = jax.lax

    def conv(x, w, b):
        y = lax.conv_general_dilated(x, w, (1, 1), "VALID",
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return y + b[None, :, None, None]

    def pool(x):
        return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def loss_of(ps, X, y):
        w1, b1, w2, b2, W3, b3, W4, b4 = ps
        h = jnp.tanh(pool(conv(X, w1, b1)))
        h = jnp.tanh(pool(conv(h, w2, b2)))
        h = jnp.tanh(h.reshape(h.shape[0], 800) @ W3 + b3)
        logp = jax.nn.log_softmax(h @ W4 + b4)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    def update(ps, X, y):
        loss, gs = jax.value_and_grad(loss_of)(ps, X, y)
        return loss, [p - LR * g for p, g in zip(ps, gs)]

    update = jax.jit(update, donate_argnums=0)
    state = [jnp.asarray(p) for p in params]

    def step(X, y):
        nonlocal state
        loss, state = update(state, X, y)
        return float(loss)

    return step


def check_first_losses(steps):
    """Every peer's first step from the same parameters and batch gives the same loss."""
    first = {name: float(fn(*a)) for name, fn, a in steps if a}
    ref = first["symgrad"]
    print("first loss: " + ", ".join(f"{name} {v:.6f}" for name, v in first.items()))
    bad = [name for name, v in first.items() if abs(v - ref) > 1e-4 * max(1.0, abs(ref))]
    if bad:
        raise SystemExit(f"bench_cnn: {', '.join(bad)} computed another first loss than "
                         f"symgrad ({ref:.6f}): not the same step")


RB = (32, 64, 32)  # batch, channels, height = width


def resnet_params(r):
    bound = np.float32(1 / np.sqrt(RB[1] * 9))
    return [r.uniform(-bound, bound, (RB[1], RB[1], 3, 3)).astype("float32") for _ in range(2)]


def resnet_symgrad(params):
    from symgrad import layers as L
    x = sg.tensor4("x", dtype="float32")
    convs = [L.Conv2D(RB[1], RB[1], 3, padding=1, bias=False, dtype="float32", name=f"c{i}")
             for i in range(2)]
    bns = [L.BatchNorm2D(RB[1], dtype="float32", name=f"bn{i}") for i in range(2)]
    for conv, w in zip(convs, params):
        conv.weight.set_value(w)
    h = sg.relu(bns[0](convs[0](x)))
    out = sg.relu(bns[1](convs[1](h)) + x)
    return sg.train_step((out ** 2).mean(), [x], optimizer=sg.optim.SGD(float(LR)),
                         name="resnet_block")


def resnet_torch(params):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(int(os.environ.get("SYMGRAD_NUM_THREADS", "1")))
    nn = torch.nn
    convs = [nn.Conv2d(RB[1], RB[1], 3, padding=1, bias=False) for _ in range(2)]
    bns = [nn.BatchNorm2d(RB[1]) for _ in range(2)]
    with torch.no_grad():
        for conv, w in zip(convs, params):
            conv.weight.copy_(torch.from_numpy(w))
    opt = torch.optim.SGD([p for m in convs + bns for p in m.parameters()], lr=float(LR))

    def step(X):
        x = torch.from_numpy(X)
        h = torch.relu(bns[0](convs[0](x)))
        loss = (torch.relu(bns[1](convs[1](h)) + x) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def measure(fns, args, rounds=5):
    """Best time of each, in interleaved rounds (load drifts hit all alike)."""
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, (fn, a) in enumerate(zip(fns, args)):
            best[i] = min(best[i], best_time(fn, *a, repeat=3))
    return best


def run_one():
    start_child()
    r = rng()
    params = init(r)
    X = r.standard_normal((N, 1, 28, 28)).astype("float32")
    y = r.integers(0, 10, N)
    steps = [("im2col floor", im2col_floor(params), ()),
             ("symgrad", symgrad_step(params), (X, y)),
             ("PyTorch eager", torch_step(params), (X, y)),
             ("JAX jit", jax_step(params), (X, y))]
    steps = [s for s in steps if s[1] is not None]
    check_first_losses(steps)
    times = measure([fn for _, fn, _ in steps], [a for _, _, a in steps])
    print(f"threads: {os.environ.get('SYMGRAD_NUM_THREADS')}")
    table([[name, f"{t * 1e3:.2f}", f"{t / times[0]:.2f}x"] for (name, _, _), t in
           zip(steps, times)], ["LeNet-5 step", "ms", "vs floor"])
    resnet_block(r)


def resnet_block(r):
    params = resnet_params(r)
    X = r.standard_normal((RB[0], RB[1], RB[2], RB[2])).astype("float32")
    steps = [("symgrad", resnet_symgrad(params)), ("PyTorch eager", resnet_torch(params))]
    steps = [s for s in steps if s[1] is not None]
    times = measure([fn for _, fn in steps], [(X,)] * len(steps), rounds=3)
    print()
    table([[name, f"{t * 1e3:.1f}", f"{t / times[-1]:.2f}x"] for (name, _), t in
           zip(steps, times)], [f"ResNet block step ({RB[0]}x{RB[1]}x{RB[2]}x{RB[2]})", "ms",
                                "vs PyTorch"])


def main():
    print(f"LeNet-5 train step, float32, batch {N}; a ResNet block's; {cores()} cores")
    run_per_thread_count(__file__)


if __name__ == "__main__":
    run_one() if "--child" in sys.argv else main()

"""LSTM train step, float32 (issue #13's benchmark; per-example gradients: bench_per_example.py).

An LSTM language-model step: T=50 steps, batch 32, input 64, hidden 256, a
softmax cross-entropy over 100 classes at every step (mean over steps and
examples), SGD on every parameter. symgrad writes the loop with ``sg.scan``
(one C call per step of training: the loop, its gradient and the updates).
Against: the floor -- the products no implementation can avoid, through NumPy
into preallocated outputs: the T recurrent products forward (``h @ Wh``) and
backward (``dz @ Wh.T``), and as one GEMM over all steps each product that
does not depend on the previous step (input and output projections, the
output's two gradients, the weight gradients of ``Wx`` and ``Wh``) -- and,
where installed, PyTorch (``torch.nn.LSTM``, and a cell loop in eager mode),
JAX (``jax.jit`` of ``lax.scan``) and PyTensor (``scan``, on its default Numba
backend and on its C backend). Each peer's first call must compute the
model's loss from the same weights (NumPy in float64, to 1e-4), or the run
stops.

Each thread count runs in a child process (BLAS reads its thread count when
it loads); peak RSS is the child's, after everything ran.

    python bench/bench_lstm.py
"""

import os
import resource
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import best_time, rng, run_per_thread_count, start_child, table  # noqa: E402

import symgrad as sg  # noqa: E402

T, B, I, H, C = 50, 32, 64, 256, 100
LR = np.float32(0.1)


def init(r):
    def u(*shape, fan):
        return r.uniform(-1 / np.sqrt(fan), 1 / np.sqrt(fan), shape).astype("float32")
    return {"Wx": u(I, 4 * H, fan=H), "Wh": u(H, 4 * H, fan=H), "b": u(4 * H, fan=H),
            "Wy": u(H, C, fan=H), "by": u(C, fan=H)}


def data(r):
    return (r.standard_normal((T, B, I)).astype("float32"),
            r.integers(0, C, (T, B)).astype("int64"))


# --------------------------------------------------------------------------- symgrad

def symgrad_step(params):
    p = {k: sg.shared(v.copy(), name=k) for k, v in params.items()}
    X = sg.tensor3("X", dtype="float32")
    Y = sg.matrix("Y", dtype="int64")
    h0 = sg.zeros((B, H), dtype="float32")

    def cell(x_t, h, c):
        z = x_t @ p["Wx"] + h @ p["Wh"] + p["b"]
        i, f = sg.sigmoid(z[:, :H]), sg.sigmoid(z[:, H:2 * H])
        g, o = sg.tanh(z[:, 2 * H:3 * H]), sg.sigmoid(z[:, 3 * H:])
        c = f * c + i * g
        return [o * sg.tanh(c), c]

    (hs, _), _ = sg.scan(cell, sequences=X, outputs_info=[h0, h0], name="lstm")
    logits = hs.reshape((T * B, H)) @ p["Wy"] + p["by"]
    loss = sg.nn.cross_entropy(logits, Y.reshape((T * B,))).mean()
    flat = list(p.values())
    grads = sg.grad(loss, flat)
    f = sg.function([X, Y], loss, updates=[(v, v - LR * g) for v, g in zip(flat, grads)])
    return f


def numpy_loss(params, X, Y):
    """The model's loss in NumPy (float64), to check that the step computes it."""
    P = {k: v.astype("float64") for k, v in params.items()}
    h = c = np.zeros((B, H))
    hs = []
    for x_t in X.astype("float64"):
        z = x_t @ P["Wx"] + h @ P["Wh"] + P["b"]
        sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
        i, f, g, o = sig(z[:, :H]), sig(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), sig(z[:, 3 * H:])
        c = f * c + i * g
        h = o * np.tanh(c)
        hs.append(h)
    logits = np.array(hs).reshape(T * B, H) @ P["Wy"] + P["by"]
    logits -= logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -logp[np.arange(T * B), Y.reshape(-1)].mean()


def floor(params):
    """The products of one step no implementation avoids, into preallocated outputs."""
    r = rng(1)
    Wx, Wh, Wy = params["Wx"], params["Wh"], params["Wy"]
    X2 = r.standard_normal((T * B, I)).astype("float32")
    Hs = r.standard_normal((T * B, H)).astype("float32")
    DZ = r.standard_normal((T * B, 4 * H)).astype("float32")
    DL = r.standard_normal((T * B, C)).astype("float32")
    h = r.standard_normal((B, H)).astype("float32")
    dz = r.standard_normal((B, 4 * H)).astype("float32")
    zx = np.empty((T * B, 4 * H), "float32")
    zh = np.empty((B, 4 * H), "float32")
    dh = np.empty((B, H), "float32")
    logits = np.empty((T * B, C), "float32")
    dHs = np.empty((T * B, H), "float32")
    dWy, dWx, dWh = (np.empty(w.shape, "float32") for w in (Wy, Wx, Wh))

    def run():
        np.matmul(X2, Wx, out=zx)
        for _ in range(T):
            np.matmul(h, Wh, out=zh)
        np.matmul(Hs, Wy, out=logits)
        np.matmul(DL, Wy.T, out=dHs)
        np.matmul(Hs.T, DL, out=dWy)
        for _ in range(T):
            np.matmul(dz, Wh.T, out=dh)
        np.matmul(X2.T, DZ, out=dWx)
        np.matmul(Hs.T, DZ, out=dWh)

    return run


# --------------------------------------------------------------------------- peers

def _threads():
    return int(os.environ.get("SYMGRAD_NUM_THREADS", "1"))


def torch_steps(params):
    """``[(label, step)]`` of PyTorch: ``torch.nn.LSTM`` and an eager cell loop; [] without torch."""
    try:
        import torch
    except ImportError:
        return []
    torch.set_num_threads(_threads())
    out = []
    for kind in ("nn.LSTM", "cell loop"):
        Wx, Wh, b = (torch.tensor(params[k].copy(), requires_grad=True) for k in ("Wx", "Wh", "b"))
        Wy, by = (torch.tensor(params[k].copy(), requires_grad=True) for k in ("Wy", "by"))
        if kind == "nn.LSTM":
            lstm = torch.nn.LSTM(I, H)
            with torch.no_grad():  # the same weights, in PyTorch's layout
                lstm.weight_ih_l0.copy_(Wx.detach().T)
                lstm.weight_hh_l0.copy_(Wh.detach().T)
                lstm.bias_ih_l0.copy_(b.detach())
                lstm.bias_hh_l0.zero_()
            ps = list(lstm.parameters()) + [Wy, by]
        else:
            ps = [Wx, Wh, b, Wy, by]
        opt = torch.optim.SGD(ps, lr=float(LR))

        def step(X, Y, kind=kind, lstm=lstm if kind == "nn.LSTM" else None,
                 Wx=Wx, Wh=Wh, b=b, Wy=Wy, by=by, opt=opt):
            X, Y = torch.from_numpy(X), torch.from_numpy(Y)
            if kind == "nn.LSTM":
                hs, _ = lstm(X)
            else:
                h = c = torch.zeros(B, H)
                zx = X @ Wx
                outs = []
                for t in range(T):
                    z = zx[t] + h @ Wh + b
                    i, f, g, o = z.chunk(4, dim=1)
                    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                    h = torch.sigmoid(o) * torch.tanh(c)
                    outs.append(h)
                hs = torch.stack(outs)
            logits = hs.reshape(T * B, H) @ Wy + by
            loss = torch.nn.functional.cross_entropy(logits, Y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss.item()

        out.append((f"PyTorch {kind}", step))
    return out


def jax_step(params):
    """``jax.jit`` of the step with ``lax.scan``, or None without JAX."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None

    def loss_fn(ps, X, Y):
        def cell(carry, x_t):
            h, c = carry
            z = x_t @ ps["Wx"] + h @ ps["Wh"] + ps["b"]
            i, f, g, o = jnp.split(z, 4, axis=1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), h

        zero = jnp.zeros((B, H), jnp.float32)
        _, hs = jax.lax.scan(cell, (zero, zero), X)
        logits = hs.reshape(T * B, H) @ ps["Wy"] + ps["by"]
        logp = jax.nn.log_softmax(logits, axis=1)
        return -jnp.take_along_axis(logp, Y.reshape(-1, 1), axis=1).mean()

    @jax.jit
    def update(ps, X, Y):
        loss, g = jax.value_and_grad(loss_fn)(ps, X, Y)
        return jax.tree_util.tree_map(lambda p, d: p - LR * d, ps, g), loss

    state = {"ps": {k: jnp.asarray(v) for k, v in params.items()}}

    def step(X, Y):
        state["ps"], loss = update(state["ps"], X, Y)
        return float(loss)

    return step


def pytensor_steps(params):
    """``[(label, step)]`` of PyTensor's ``scan``, one per backend (``peers.PYTENSOR_MODES``)."""
    try:
        import pytensor
        import pytensor.tensor as pt
    except ImportError:
        return []
    from peers import PYTENSOR_MODES

    out = []
    for label, mode in PYTENSOR_MODES.items():
        p = {k: pytensor.shared(v.copy(), name=k) for k, v in params.items()}
        X = pt.tensor3("X", dtype="float32")
        Y = pt.matrix("Y", dtype="int64")
        h0 = pt.zeros((B, H), dtype="float32")

        def cell(x_t, h, c, Wx, Wh, b):
            z = x_t @ Wx + h @ Wh + b
            i, f = pt.sigmoid(z[:, :H]), pt.sigmoid(z[:, H:2 * H])
            g, o = pt.tanh(z[:, 2 * H:3 * H]), pt.sigmoid(z[:, 3 * H:])
            c = f * c + i * g
            return o * pt.tanh(c), c

        hs, _ = pytensor.scan(cell, sequences=X, outputs_info=[h0, h0], return_updates=False,
                              non_sequences=[p["Wx"], p["Wh"], p["b"]], strict=True)
        logits = hs.reshape((T * B, H)) @ p["Wy"] + p["by"]
        logp = logits - pt.logsumexp(logits, axis=1, keepdims=True)
        loss = -logp[pt.arange(T * B), Y.reshape((-1,))].mean()
        flat = list(p.values())
        grads = pytensor.grad(loss, flat)
        fn = pytensor.function([X, Y], loss, mode=mode,
                               updates=[(v, v - LR * g) for v, g in zip(flat, grads)])
        out.append((f"PyTensor scan ({label})", lambda X, Y, fn=fn: float(fn(X, Y))))
    return out


def check_first_loss(label, step, X, Y, want):
    """Call ``step`` once (from the initial weights) and check it computed the model's loss."""
    got = step(X, Y)
    if not abs(got - want) < 1e-4 * max(1.0, abs(want)):
        raise AssertionError(f"{label}: first loss {got!r}, NumPy (float64) {want!r}")


# --------------------------------------------------------------------------- driver

def measure(fns, args, rounds=5):
    """Best time of each function, measured in interleaved rounds (load drifts hit all alike)."""
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, (fn, a) in enumerate(zip(fns, args)):
            best[i] = min(best[i], best_time(fn, *a, repeat=3, min_time=0.3))
    return best


def run_one():
    start_child()
    r = rng()
    params = init(r)
    X, Y = data(r)
    step = symgrad_step(params)
    first = step(X, Y)
    want = numpy_loss(params, X, Y)
    assert abs(first - want) < 1e-4 * max(1.0, abs(want)), (first, want)
    steps = [("floor (products only)", floor(params), ()), ("symgrad", step, (X, Y))]
    peers = torch_steps(params) + pytensor_steps(params)
    js = jax_step(params)
    if js is not None:
        peers.append(("JAX jit + lax.scan", js))
    for label, fn in peers:   # every peer computes the same loss from the same weights
        check_first_loss(label, fn, X, Y, want)
    steps += [(label, fn, (X, Y)) for label, fn in peers]
    times = measure([fn for _, fn, _ in steps], [a for _, _, a in steps])
    rows = [[name, f"{t * 1e3:.2f}", f"{t / times[0]:.2f}x"]
            for (name, _, _), t in zip(steps, times)]
    arena = sum(step._kernel.kernel.arena_sizes()) if hasattr(step, "_kernel") else None
    print(f"threads: {_threads()}; LSTM T={T} B={B} I={I} H={H}, {C} classes, float32; "
          f"first loss {first:.4f} (NumPy float64: {want:.4f})")
    table(rows, ["LSTM train step", "ms", "vs floor"])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {rss:.0f} MiB" +
          (f"; symgrad's LSTM step workspace: {arena / 2**20:.1f} MiB" if arena else ""))


def main():
    run_per_thread_count(__file__)


if __name__ == "__main__":
    run_one() if "--child" in sys.argv else main()

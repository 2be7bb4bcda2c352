"""Per-example gradients of a minibatch with ``sg.jacobian``, and their norms.

The gradient of the minibatch's mean loss is the mean of the per-example
gradients, and computing it from the mean (``sg.grad``) is the cheap way:
one backward pass. When each example's own gradient is wanted -- to clip it
(differentially private SGD), to find the examples that pull hardest, to
measure gradient noise -- ``sg.jacobian`` of the per-example losses gives
all of them: a loop over the examples (``sg.map``) inside the compiled
function, for a minibatch of any size.

This script builds a small MLP and prints, for a minibatch of random data:
each example's loss and gradient norm (largest first), a check that their
mean is the minibatch gradient, and a check against gradients computed one
example at a time.

    python examples/per_example_gradients.py
"""

import numpy as np

import symgrad as sg


def main(batch=16, features=8, hidden=16, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = sg.matrix("X")
    y = sg.vector("y", dtype="int64")
    layer1 = sg.layers.Dense(features, hidden, activation=sg.tanh, rng=1, name="layer1")
    layer2 = sg.layers.Dense(hidden, classes, rng=2, name="layer2")
    params = [layer1.W, layer1.b, layer2.W, layer2.b]
    losses = sg.nn.cross_entropy(layer2(layer1(X)), y)        # one loss per example
    mean_grads = sg.grad(losses.mean(), params)
    per_example = sg.jacobian(losses, params)                   # one gradient per example

    f = sg.function([X, y], [losses, *mean_grads, *per_example])
    xv = rng.standard_normal((batch, features))
    yv = rng.integers(0, classes, batch)
    out = f(xv, yv)
    loss_v, means, jacs = out[0], out[1:5], out[5:]
    for p, j in zip(params, jacs):
        print(f"d(losses)/d({p.name}): {j.shape} (batch {batch} x {p.get_value().shape})")

    norms = np.sqrt(sum((j.reshape(batch, -1) ** 2).sum(axis=1) for j in jacs))
    print("example  loss     gradient norm")
    for k in np.argsort(-norms):
        print(f"{k:7d}  {loss_v[k]:.4f}   {norms[k]:.4f}")

    worst = max(float(np.abs(j.mean(axis=0) - m).max()) for j, m in zip(jacs, means))
    print(f"mean of the per-example gradients vs the minibatch gradient: max difference "
          f"{worst:.2e}")

    x1 = sg.matrix("x1")
    y1 = sg.vector("y1", dtype="int64")
    one = sg.function([x1, y1], sg.grad(sg.nn.cross_entropy(layer2(layer1(x1)), y1).sum(),
                                        params))
    apart = max(float(np.abs(j[k] - g).max())
                for k in range(batch) for j, g in zip(jacs, one(xv[k:k + 1], yv[k:k + 1])))
    print(f"vs gradients computed one example at a time: max difference {apart:.2e}")
    return norms, worst, apart


if __name__ == "__main__":
    main()

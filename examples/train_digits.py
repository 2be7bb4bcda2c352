"""Train an MLP on handwritten digits: build, compile, train, inspect, save.

The data are the 8x8 digit images that scikit-learn ships inside its package
(1,797 real scans, no download). The model is plain Python building graph;
the loss is a separate function (``loss_fn(model(x), y)``); the train step
compiles forward, backward and the Adam update into one C call per batch.

    python -m pip install ".[examples]" && python examples/train_digits.py

Options: --epochs N, --mode c|py, --out DIR (checkpoint and SVG; default a
folder in the system's temp directory).
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

import symgrad as sg

try:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
except ImportError:
    sys.exit("This example needs scikit-learn (for its bundled digits data): "
             "python -m pip install \".[examples]\"")
try:
    from tqdm import tqdm
except ImportError:  # the bar is a nicety; train without it
    tqdm = None


class MLP:
    """Dense layers with ReLU between them; calling it builds the logits' graph."""

    def __init__(self, sizes, rng):
        last = len(sizes) - 2
        self.layers = [sg.layers.Dense(n_in, n_out, activation=None if i == last else sg.relu,
                                       init="glorot_uniform" if i == last else "he_normal",
                                       rng=rng, name=f"layer{i + 1}")
                       for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]))]

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    @property
    def params(self):
        return [p for layer in self.layers for p in layer.params]


def loss_fn(logits, labels):
    """Mean cross-entropy: the loss as its own function, the way many models are written."""
    return sg.nn.cross_entropy(logits, labels).mean()


def batches(n, size, rng):
    order = rng.permutation(n)
    return [order[i:i + size] for i in range(0, n, size)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--mode", choices=("c", "py"), default=sg.config.mode)
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "symgrad_digits"))
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)

    # -- data: pixel values 0..16 scaled to 0..1; a stratified 75/25 split
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data / 16.0, digits.target.astype("int64"), test_size=0.25,
        stratify=digits.target, random_state=0)

    # -- the graphs: one model, two graphs sharing its parameters
    X, y = sg.matrix("X"), sg.vector("y", dtype="int64")
    model = MLP([64, 128, 10], rng)
    logits = model(X)
    loss = loss_fn(logits, y)
    sg.summary("accuracy", sg.eq(logits.argmax(axis=1), y).astype("float64").mean())

    lr = sg.shared(np.float64(0.01), name="lr", trainable=False)   # a schedule sets it below
    t0 = time.perf_counter()
    step = sg.train_step(loss, [X, y], optimizer=sg.optim.Adam(lr=lr), mode=args.mode)
    predict = sg.function([X], model(X).argmax(axis=1), mode=args.mode, name="predict")
    print(f"compiled the train step and the predictor in {time.perf_counter() - t0:.2f} s "
          f"(mode {args.mode!r}; training {', '.join(p.name for p in step.params)})")

    # -- train: one compiled call per batch; the step returns loss and summaries
    t0 = time.perf_counter()
    n_steps = args.epochs * len(batches(len(x_train), args.batch_size, rng))
    bar = tqdm(total=n_steps, desc="training", unit="step") if tqdm else None
    for epoch in range(args.epochs):
        lr.set_value(0.01 * 0.5 * (1 + np.cos(np.pi * epoch / args.epochs)))  # cosine decay
        for idx in batches(len(x_train), args.batch_size, rng):
            out = step(x_train[idx], y_train[idx])
            if bar is not None:
                bar.set_postfix(loss=f"{out['loss']:.4f}", acc=f"{out['accuracy']:.2f}",
                                refresh=False)
                bar.update(1)
        if bar is None:
            print(f"epoch {epoch + 1}: loss {out['loss']:.4f}")
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - t0
    accuracy = float(np.mean(predict(x_test) == y_test))
    print(f"trained {n_steps} steps in {elapsed:.2f} s ({1e6 * elapsed / n_steps:.0f} us/step)")
    print(f"test accuracy: {accuracy:.4f} ({len(y_test)} test images)")

    # -- inspect: the gradient of the output layer's weights is ordinary graph
    W_out = model.layers[-1].W
    print(f"\nThe gradient graph of {W_out.name}:")
    print(sg.debugprint(step.gradients[W_out]))

    # -- save: parameters and Adam's state, atomically; reload into a fresh model
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "digits_mlp.npz")
    names = sg.save(path, step)
    print(f"saved a checkpoint of {len(names)} arrays to {path}")
    fresh = MLP([64, 128, 10], np.random.default_rng(1))
    sg.load(path, fresh.params, strict=False)     # parameters only, not Adam's state
    reloaded = sg.function([X], fresh(X).argmax(axis=1), mode=args.mode)
    print(f"reloaded into a new model: test accuracy {np.mean(reloaded(x_test) == y_test):.4f}")

    # -- draw the gradient graph, when Graphviz is installed
    svg = os.path.join(args.out, "grad_" + W_out.name.replace(".", "_") + ".svg")
    try:
        sg.render(step.gradients[W_out], svg)
        print(f"wrote the gradient graph to {svg}")
    except RuntimeError as e:
        print(f"no SVG drawn: {e}")
    return accuracy


if __name__ == "__main__":
    main()

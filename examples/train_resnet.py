"""Train a small residual network on the 8x8 digits: conv, batch-norm, relu blocks with skip
connections, and batch norm's two graphs.

The data are the 8x8 digit images scikit-learn ships (1,797 scans, no download),
kept at 8x8: a 3x3 convolution stem to 16 channels, two residual blocks
(conv-bn-relu-conv-bn plus the block's input, then relu), global average
pooling and a dense layer. Every batch norm is a ``sg.layers.BatchNorm2D``:

- the *training* graph (``model(x, training=True)``) normalises each channel
  by the statistics of the batch at hand, and ``sg.train_step`` updates the
  layer's running mean and variance at every step (nobody lists them);
- the *inference* graph (``training=False``) normalises by those running
  statistics, over the same shared variables: an image's prediction no longer
  depends on the batch it comes in.

The end of the run shows the difference on the test images.

    python -m pip install ".[examples]" && python examples/train_resnet.py

Options: --epochs N (default 12: about 99% test accuracy), --quick (3 epochs: about 98%),
--mode c|py.
"""

import argparse
import sys
import time

import numpy as np

import symgrad as sg
from symgrad import layers as L

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


class Block:
    """``relu(bn(conv(relu(bn(conv(x))))) + x)``: a residual block keeping the channels."""

    def __init__(self, channels, rng, name):
        self.conv1 = L.Conv2D(channels, channels, 3, padding=1, bias=False, rng=rng,
                              name=f"{name}.conv1")
        self.bn1 = L.BatchNorm2D(channels, name=f"{name}.bn1")
        self.conv2 = L.Conv2D(channels, channels, 3, padding=1, bias=False, rng=rng,
                              name=f"{name}.conv2")
        self.bn2 = L.BatchNorm2D(channels, name=f"{name}.bn2")

    def __call__(self, x, training):
        h = sg.relu(self.bn1(self.conv1(x), training=training))
        return sg.relu(self.bn2(self.conv2(h), training=training) + x)


class ResNet:
    def __init__(self, channels=16, blocks=2, seed=0):
        rng = np.random.default_rng(seed)
        self.stem = L.Sequential(L.Conv2D(1, channels, 3, padding=1, bias=False, rng=rng,
                                          name="stem.conv"),
                                 L.BatchNorm2D(channels, name="stem.bn"), sg.relu)
        self.blocks = [Block(channels, rng, f"block{i + 1}") for i in range(blocks)]
        self.head = L.Dense(channels, 10, rng=rng, name="head")

    def __call__(self, x, training=True):
        h = self.stem(x, training=training)
        for block in self.blocks:
            h = block(h, training)
        h = sg.nn.adaptive_avg_pool2d(h, 1)
        return self.head(h.reshape((h.shape[0], -1)))


def batches(n, size, rng):
    """Shuffled full batches (the few left over wait for the next epoch): a batch of three
    would give batch norm, and its running statistics, a poor estimate."""
    order = rng.permutation(n)
    return [order[i:i + size] for i in range(0, n - size + 1, size)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--quick", action="store_true", help="3 epochs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--mode", choices=("c", "py"), default=sg.config.mode)
    args = parser.parse_args(argv)
    epochs = 3 if args.quick else args.epochs
    rng = np.random.default_rng(0)

    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")[:, None]      # (1797, 1, 8, 8)
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target.astype("int64"), test_size=0.25, stratify=digits.target,
        random_state=0)

    sg.config.floatX = "float32"
    X, y = sg.tensor4("X", dtype="float32"), sg.vector("y", dtype="int64")
    model = ResNet()
    logits = model(X, training=True)
    loss = sg.nn.cross_entropy(logits, y).mean()
    sg.summary("accuracy", sg.eq(logits.argmax(axis=1), y).astype("float32").mean())
    t0 = time.perf_counter()
    lr = sg.shared(np.float32(3e-3), name="lr", trainable=False)     # cosine decay below
    step = sg.train_step(loss, [X, y], optimizer=sg.optim.Adam(lr=lr), mode=args.mode)
    predict = sg.function([X], model(X, training=False).argmax(axis=1), mode=args.mode,
                          name="predict")
    predict_batch_stats = sg.function([X], logits.argmax(axis=1), mode=args.mode,
                                      name="predict_batch_stats")
    stats = sorted({v.name.rsplit(".", 1)[0] for v in step.state if "running" in v.name})
    print(f"compiled in {time.perf_counter() - t0:.1f} s; {len(step.params)} parameters, and "
          f"the step updates the running statistics of {len(stats)} batch norms "
          f"({', '.join(stats)})")

    n_steps = epochs * len(batches(len(x_train), args.batch_size, rng))
    bar = tqdm(total=n_steps, desc="training", unit="step") if tqdm else None
    t0 = time.perf_counter()
    for epoch in range(epochs):
        lr.set_value(np.float32(3e-3 * 0.5 * (1 + np.cos(np.pi * epoch / epochs))))
        for idx in batches(len(x_train), args.batch_size, rng):
            out = step(x_train[idx], y_train[idx])
            if bar is not None:
                bar.set_postfix(loss=f"{out['loss']:.3f}", acc=f"{out['accuracy']:.2f}",
                                refresh=False)
                bar.update(1)
        test_acc = float(np.mean(predict(x_test) == y_test))
        msg = f"epoch {epoch + 1}: train loss {out['loss']:.4f}, test accuracy {test_acc:.4f}"
        print(msg) if bar is None else bar.write(msg)
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - t0
    print(f"trained {n_steps} steps in {elapsed:.1f} s ({1e3 * elapsed / n_steps:.1f} ms/step)")
    print(f"test accuracy: {test_acc:.4f} ({len(y_test)} test images, inference graph)")

    # -- batch norm's two graphs on the same test images
    bn = model.stem[1]
    print(f"\n{bn.name}: running mean of the first 4 channels "
          f"{np.round(bn.running_mean.get_value()[:4], 3)}, after "
          f"{int(bn.num_batches_tracked.get_value())} batches")
    alone = np.array([predict(x_test[i:i + 1])[0] for i in range(64)])
    print(f"inference graph (running statistics): test accuracy {test_acc:.4f}; each image's "
          f"prediction alone equals its prediction in the batch: "
          f"{bool(np.all(alone == predict(x_test[:64])))}")
    same = x_test[y_test == y_test[0]][:8]                 # eight images of one digit
    for size, name in ((len(x_test), "the whole test set as one batch"), (8, "batches of 8")):
        acc = np.mean(np.concatenate([predict_batch_stats(x_test[i:i + size])
                                      for i in range(0, len(x_test), size)]) == y_test)
        print(f"training graph (batch statistics), {name}: test accuracy {acc:.4f}")
    print(f"training graph on a batch of 8 images of the digit {y_test[0]}: predicts "
          f"{predict_batch_stats(same)}; the inference graph: {predict(same)}")
    return test_acc


if __name__ == "__main__":
    main()

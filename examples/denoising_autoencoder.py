"""A denoising autoencoder with tied weights on handwritten digits.

The model of the Theano tutorial's denoising autoencoder (Vincent et al.,
2008): each training image is corrupted -- every pixel zeroed with
probability ``--corruption``, a binomial mask drawn by ``sg.random`` inside
the compiled train step, fresh at every call -- and the network learns to
reconstruct the clean image from it:

    hidden = sigmoid(corrupted @ W + b_hidden)
    logits = hidden @ W.T + b_visible          # W tied: the decoder is W's transpose
    loss   = cross-entropy(clean pixels, sigmoid(logits)), summed over the 64 pixels

The data are the 1,797 8x8 digit scans that scikit-learn ships inside its
package; the file is read with NumPy (scikit-learn is not imported). A fifth
is held out: the reconstruction error printed after every epoch is measured
on those images, uncorrupted. The learned filters (the columns of W, one 8x8
image per hidden unit) are drawn as a PNG when matplotlib is installed.

    python -m pip install ".[examples]" && python examples/denoising_autoencoder.py
    python examples/denoising_autoencoder.py --quick     # a few seconds

Options: --epochs, --hidden, --corruption, --lr, --batch-size, --mode c|py,
--out DIR (the PNG; default a folder in the system's temp directory), --seed.
"""

import argparse
import gzip
import importlib.util
import os
import sys
import tempfile
import time

import numpy as np

import symgrad as sg

try:
    from tqdm import tqdm
except ImportError:  # the bar is a nicety; train without it
    tqdm = None


def load_digits():
    """The digits as (n, 64) pixels in [0, 1] and their labels, from scikit-learn's file."""
    spec = importlib.util.find_spec("sklearn")
    path = None if spec is None else os.path.join(*spec.submodule_search_locations[:1],
                                                   "datasets", "data", "digits.csv.gz")
    if path is None or not os.path.exists(path):
        sys.exit("This example reads the digits bundled with scikit-learn: "
                 "python -m pip install \".[examples]\"")
    with gzip.open(path, "rt") as f:
        data = np.loadtxt(f, delimiter=",")
    return data[:, :-1] / 16.0, data[:, -1].astype(np.int64)


class DenoisingAutoencoder:
    """Tied weights: the encoder is ``W``, the decoder its transpose."""

    def __init__(self, n_visible, n_hidden, rng):
        bound = 4 * np.sqrt(6.0 / (n_visible + n_hidden))  # the tutorial's init for sigmoids
        self.W = sg.shared(rng.uniform(-bound, bound, (n_visible, n_hidden)), name="W")
        self.b_hidden = sg.shared(np.zeros(n_hidden), name="b_hidden")
        self.b_visible = sg.shared(np.zeros(n_visible), name="b_visible")

    def encode(self, x):
        return sg.sigmoid(x @ self.W + self.b_hidden)

    def decode_logits(self, h):
        return h @ self.W.T + self.b_visible

    def reconstruction_error(self, corrupted, clean):
        """Per-image cross-entropy of the reconstruction of ``clean`` from ``corrupted``."""
        logits = self.decode_logits(self.encode(corrupted))
        return sg.nn.binary_cross_entropy_with_logits(logits, clean).sum(axis=1)


def draw_filters(W, path):
    """The columns of W as 8x8 images in a grid; False when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    n = W.shape[1]
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols, rows))
    for k, ax in enumerate(np.ravel(axes)):
        ax.axis("off")
        if k < n:
            ax.imshow(W[:, k].reshape(8, 8), cmap="gray", interpolation="nearest")
    fig.suptitle("denoising autoencoder filters (columns of W)")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (a few seconds)")
    parser.add_argument("--epochs", type=int, default=None, help="default 60, 8 with --quick")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--corruption", type=float, default=0.3,
                        help="the probability of zeroing a pixel")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--mode", choices=("c", "py"), default=sg.config.mode)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "symgrad_dae"))
    args = parser.parse_args(argv)
    epochs = args.epochs if args.epochs is not None else (8 if args.quick else 60)
    rng = np.random.default_rng(args.seed)

    pixels, _ = load_digits()
    order = rng.permutation(len(pixels))
    n_test = len(pixels) // 5
    x_test, x_train = pixels[order[:n_test]], pixels[order[n_test:]]

    # -- the graphs: the training graph corrupts its input, the evaluation graph does not
    X = sg.matrix("X")
    model = DenoisingAutoencoder(64, args.hidden, rng)
    noise = sg.random.RandomStream(args.seed)
    keep = noise.bernoulli(1.0 - args.corruption, size=X.shape)   # binomial corruption
    loss = model.reconstruction_error(X * keep, X).mean()
    t0 = time.perf_counter()
    step = sg.train_step(loss, [X], optimizer=sg.optim.SGD(args.lr), mode=args.mode)
    error = sg.function([X], model.reconstruction_error(X, X).mean(), mode=args.mode,
                        name="reconstruction_error")
    print(f"compiled the train step and the evaluation in {time.perf_counter() - t0:.2f} s "
          f"(mode {args.mode!r}; {args.hidden} hidden units, corruption {args.corruption})")

    # -- train: each call corrupts its batch afresh (the stream's state advances itself)
    errors = [float(error(x_test))]
    print(f"held-out reconstruction error before training: {errors[0]:.3f} nats per image")
    n_batches = -(-len(x_train) // args.batch_size)
    bar = tqdm(total=epochs * n_batches, desc="training", unit="step") if tqdm else None
    t0 = time.perf_counter()
    for epoch in range(epochs):
        perm = rng.permutation(len(x_train))
        for i in range(0, len(x_train), args.batch_size):
            out = step(x_train[perm[i:i + args.batch_size]])
            if bar is not None:
                bar.set_postfix(loss=f"{out['loss']:.2f}", refresh=False)
                bar.update(1)
        errors.append(float(error(x_test)))
        line = (f"epoch {epoch + 1:3d}: held-out reconstruction error {errors[-1]:.3f} "
                f"nats per image (training loss on corrupted input {out['loss']:.3f})")
        if bar is not None:
            bar.write(line)
        else:
            print(line)
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - t0
    print(f"trained {epochs * n_batches} steps in {elapsed:.2f} s")
    print(f"reconstruction error: {errors[0]:.3f} -> {errors[-1]:.3f} nats per image")

    # -- the learned filters
    os.makedirs(args.out, exist_ok=True)
    png = os.path.join(args.out, "dae_filters.png")
    if draw_filters(model.W.get_value(), png):
        print(f"drew the {args.hidden} filters to {png}")
    else:
        print("no PNG drawn: matplotlib is not installed "
              "(python -m pip install \"symgrad[examples]\" or matplotlib)")
    return errors


if __name__ == "__main__":
    main()

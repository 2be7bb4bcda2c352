"""Data-parallel training over MPI: the digits MLP on several processes.

Every rank builds the same model and walks the same global batches (one
shuffle, the same seed everywhere); each takes its own slice of every batch
and calls the train step with it. The step averages the ranks' gradients,
weighted by their slice sizes, so each update is the one a single process
would make on the whole batch: same seed, same global batch, same parameters
(up to the order of floating-point sums). Rank 0 prints the progress bar and
the test accuracy; ``sg.save`` writes the checkpoint once, from rank 0.

    python -m pip install ".[examples,mpi]"
    mpiexec -n 2 python -m mpi4py examples/train_distributed.py

(``-m mpi4py``: a rank that dies of an uncaught exception aborts the whole job
instead of leaving the others to time out.) ``--check`` also trains the same
model in one process on rank 0 and prints the largest difference between its
parameters and the distributed run's. Options: --epochs N, --batch-size N
(the global batch), --out DIR.
"""

import argparse
import os
import sys
import tempfile

import numpy as np

import symgrad as sg

try:
    from mpi4py import MPI
except ImportError:
    sys.exit('This example needs mpi4py and an MPI library: python -m pip install ".[examples,mpi]"')
try:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
except ImportError:
    sys.exit("This example needs scikit-learn (for its bundled digits data): "
             "python -m pip install \".[examples]\"")
try:
    from tqdm import tqdm
except ImportError:
    tqdm = None


def build(comm):
    """The model, its train step and its predictor (the same on every rank)."""
    X, y = sg.matrix("X"), sg.vector("y", dtype="int64")
    rng = np.random.default_rng(0)                      # same initial values everywhere
    hidden = sg.layers.Dense(64, 128, activation=sg.relu, init="he_normal", rng=rng,
                             name="layer1")
    out = sg.layers.Dense(128, 10, rng=rng, name="layer2")
    logits = out(hidden(X))
    with sg.summary_scope():
        sg.summary("accuracy", sg.eq(logits.argmax(axis=1), y).astype("float64").mean())
        step = sg.train_step(sg.nn.cross_entropy(logits, y).mean(), [X, y],
                             optimizer=sg.optim.Adam(lr=0.005), comm=comm)
    return step, sg.function([X], logits.argmax(axis=1), name="predict")


def train(step, data, epochs, batch, rank, size, bar=None):
    """Every rank walks the same global batches and trains on its slice of each."""
    x_train, y_train = data
    order_rng = np.random.default_rng(1)                # same shuffle on every rank
    for _ in range(epochs):
        order = order_rng.permutation(len(x_train))
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            bounds = np.linspace(0, len(idx), size + 1).astype(int)
            mine = idx[bounds[rank]:bounds[rank + 1]]   # may be empty in the last batch
            out = step(x_train[mine], y_train[mine])    # losses: means over the global batch
            if bar is not None:
                bar.set_postfix(loss=f"{out['loss']:.4f}", acc=f"{out['accuracy']:.2f}",
                                refresh=False)
                bar.update(1)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64, help="the global batch")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "symgrad_dist"))
    args = parser.parse_args(argv)
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data / 16.0, digits.target.astype("int64"), test_size=0.25,
        stratify=digits.target, random_state=0)

    step, predict = build(comm)
    steps = args.epochs * -(-len(x_train) // args.batch_size)
    bar = tqdm(total=steps, desc=f"{size} ranks", unit="step") if tqdm and rank == 0 else None
    last = train(step, (x_train, y_train), args.epochs, args.batch_size, rank, size, bar)
    if bar is not None:
        bar.close()
    accuracy = float(np.mean(predict(x_test) == y_test))   # every rank holds the same model
    if rank == 0:
        print(f"{size} ranks, global batch {args.batch_size}: final loss {last['loss']:.4f}, "
              f"test accuracy: {accuracy:.4f} ({len(y_test)} test images)")

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "digits_distributed.npz")
    names = sg.save(path, step)                          # every rank calls it; rank 0 writes
    if rank == 0:
        print(f"saved a checkpoint of {len(names)} arrays to {path} (from rank 0)")

    if args.check and rank == 0:
        alone, _ = build(None)
        train(alone, (x_train, y_train), args.epochs, args.batch_size, 0, 1)
        diff = max(float(np.abs(a.get_value() - b.get_value()).max())
                   for a, b in zip(alone.params, step.params))
        print(f"one process, same seed and global batches: largest parameter difference "
              f"{diff:.2e}")
    return accuracy


if __name__ == "__main__":
    main()

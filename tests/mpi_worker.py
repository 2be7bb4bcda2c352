"""What tests/test_distributed.py runs on every rank under mpiexec (and in one process).

``python mpi_worker.py <scenario> <out dir>``; rank 0 writes its results to
``<out dir>/<scenario>-<ranks>.npz``. Scenarios:

- ``train``: 50 SGD steps (momentum, weight decay, clipping) and 50 Adam steps of a
  float32 MLP on a global batch of 12 split unevenly across the ranks (a rank gets 0
  examples on some steps; the SGD step sums the ranks' gradients through shared memory,
  the Adam step through MPI's allreduce, as between machines), then sg.save, a bad shard on rank 1 (the step fails on every
  rank and changes nothing), sg.load, and a model that differs on rank 1;
- ``train`` then also resumes, when ``<out dir>/half.npz`` exists: sg.load that checkpoint
  of the SGD run after 25 steps (written by one process), then the other 25 steps;
- ``train`` also trains, 50 SGD steps on the same uneven shards, an MLP with dropout (its
  masks per example: each shard draws one process's rows) and a convnet with BatchNorm2D and
  BatchNorm1D (synchronised: the global batch's statistics), then gives the convnet a bad
  shard on rank 1 that fails after its batch norms' forward collectives;
- ``empty_shard`` (3 ranks): two SGD steps whose shards hold 5, 7, 0 and then 0, 4, 8
  examples, in modes "c", "debug" and "py" (issue #16: mode "debug" raised on the empty
  shard's 0 / 0, the gradient of its mean seeded with its count);
- ``stall``: rank 1 stops calling the step; ``killed``: rank 1 dies in a step.
"""

import os
import sys

import numpy as np

import symgrad as sg

BATCH, STEPS = 12, 50


def data():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((STEPS, BATCH, 6)).astype("float32")
    y = rng.integers(0, 3, (STEPS, BATCH))
    return X, y


def shard(i, rank, size):
    """The examples of rank ``rank`` in step ``i``: uneven, some ranks empty some steps."""
    if size == 1:
        return slice(0, BATCH)
    cuts = np.sort(np.random.default_rng(100 + i).integers(0, BATCH + 1, size - 1))
    bounds = np.concatenate([[0], cuts, [BATCH]])
    return slice(int(bounds[rank]), int(bounds[rank + 1]))


def build(optimizer, comm=None, hidden=8, mode=None):
    X, y = sg.matrix("X", dtype="float32"), sg.vector("y", dtype="int64")
    net = sg.layers.Sequential(
        sg.layers.Dense(6, hidden, activation=sg.tanh, rng=1, name="hid", dtype="float32"),
        sg.layers.Dense(hidden, 3, rng=2, name="out", dtype="float32"))
    logits = net(X)
    with sg.summary_scope():
        sg.summary("accuracy", sg.eq(logits.argmax(axis=1), y).astype("float32").mean())
        losses = {"ce": sg.nn.cross_entropy(logits, y).mean(),
                  "l2": 1e-3 * sum((p ** 2).sum() for p in net.params)}
        return sg.train_step(losses, [X, y], optimizer=optimizer, comm=comm, mode=mode)


def build_dropout(comm=None, mode=None):
    """An MLP with dropout after its hidden layer (its own stream, seed 11)."""
    X, y = sg.matrix("X", dtype="float32"), sg.vector("y", dtype="int64")
    net = sg.layers.Sequential(
        sg.layers.Dense(6, 8, activation=sg.tanh, rng=3, name="dhid", dtype="float32"),
        sg.layers.Dropout(0.3, rng=sg.random.RandomStream(11)),
        sg.layers.Dense(8, 3, rng=4, name="dout", dtype="float32"))
    loss = sg.nn.cross_entropy(net(X), y).mean()
    return sg.train_step(loss, [X, y], optimizer=sg.optim.SGD(0.2, momentum=0.9), comm=comm,
                         mode=mode)


def build_normed(comm=None, mode=None):
    """A convnet with BatchNorm2D over (N, 3, 4, 4) maps and BatchNorm1D over (N, 5) rows,
    then dropout."""
    X = sg.tensor("X", dtype="float32", shape=(None, 1, None, None))
    y = sg.vector("y", dtype="int64")
    net = sg.layers.Sequential(
        sg.layers.Conv2D(1, 3, 3, rng=5, name="conv", dtype="float32"),
        sg.layers.BatchNorm2D(3, name="bn2", dtype="float32"),
        sg.layers.Flatten(),
        sg.layers.Dense(48, 5, activation=sg.tanh, rng=6, name="nhid", dtype="float32"),
        sg.layers.BatchNorm1D(5, name="bn1", dtype="float32"),
        sg.layers.Dropout(0.2, rng=sg.random.RandomStream(12)),  # its size: bn1's output's
        sg.layers.Dense(5, 3, rng=7, name="nout", dtype="float32"))
    loss = sg.nn.cross_entropy(net(X, training=True), y).mean()
    return sg.train_step(loss, [X, y], optimizer=sg.optim.SGD(0.1, momentum=0.9), comm=comm,
                         mode=mode)


def images():
    X, y = data()
    maps = np.random.default_rng(8).standard_normal((STEPS, BATCH, 1, 6, 6)).astype("float32")
    return maps + X[:, :, :1, None, None], y


def train_on(step, comm, inputs):
    X, y = inputs
    rank, size = (0, 1) if comm is None else (comm.Get_rank(), comm.Get_size())
    losses = []
    for i in range(STEPS):
        s = shard(i, rank, size)
        losses.append(step(X[i, s], y[i, s])["loss"])
    return np.array(losses)


def state(step):
    """Parameters, optimizer state and running statistics ({name: array})."""
    return {(sv.name or f"#{k}"): sv.get_value() for k, sv in enumerate(step.params + step.state)}


def global_batch(comm=None):
    """{key: array}: what the dropout MLP and the convnet reach (with "/losses")."""
    out = {}
    for key, build, inputs in (("dropout", build_dropout, data()),
                               ("normed", build_normed, images())):
        step = build(comm)
        losses = train_on(step, comm, inputs)
        out.update({f"{key}/{n}": v for n, v in state(step).items()})
        out[f"{key}/losses"] = losses
        if comm is not None:
            out[f"{key}/identical"] = same_on_every_rank(comm, state(step))
            out[f"{key}/step"] = step
    return out


def optimizers():
    return {"sgd": sg.optim.SGD(0.2, momentum=0.9, weight_decay=1e-3, clip_norm=2.0),
            "adam": sg.optim.Adam(0.02, clip_norm=2.0)}


def train(step, comm, first=0, last=STEPS):
    X, y = data()
    rank, size = (0, 1) if comm is None else (comm.Get_rank(), comm.Get_size())
    losses = []
    for i in range(first, last):
        s = shard(i, rank, size)
        out = step(X[i, s], y[i, s])
        losses.append([out["loss"], out["ce"], out["l2"], out["accuracy"]])
    return np.array(losses)


def params(step):
    return {p.name: p.get_value() for p in step.params}


def same_on_every_rank(comm, values):
    """Whether every rank holds bit-identical ``values`` ({name: array})."""
    everyone = comm.allgather(values)
    return all(np.array_equal(everyone[0][k], other[k]) for other in everyone for k in values)


def scenario_train(comm, out):
    size = comm.Get_size()
    result = {}
    for key, opt in optimizers().items():
        # Adam's step sums its buffer with MPI's allreduce (as ranks on several machines
        # do), every other step through shared memory (symgrad.distributed.NodeSum)
        os.environ["SYMGRAD_MPI_SHARED_MEMORY"] = "0" if key == "adam" else "1"
        step = build(opt, comm)
        del os.environ["SYMGRAD_MPI_SHARED_MEMORY"]
        result[f"{key}/shared_memory"] = step._parallel.node_sum is not None
        losses = train(step, comm)
        result.update({f"{key}/{n}": v for n, v in params(step).items()})
        result[f"{key}/losses"] = losses
        result[f"{key}/identical"] = same_on_every_rank(comm, params(step))
        # through shared memory, the gradient kernel wrote its buffer into the window's slot
        # (NodeSum.place): no deposit copied one
        node = step._parallel.node_sum
        result[f"{key}/copies"] = -1 if node is None or step.mode != "c" else node.copies
    # No room in /dev/shm for the window (a small tmpfs, as in a container): the ranks agree
    # to use MPI's allreduce instead (a new communicator: the first's window is made)
    import symgrad.distributed as D
    room, D._shm_room = D._shm_room, lambda: 0 if comm.Get_rank() == size - 1 else room()
    try:
        cramped = build(optimizers()["sgd"], comm.Dup())
    finally:
        D._shm_room = room
    result["cramped/shared_memory"] = cramped._parallel.node_sum is not None
    train(cramped, comm)
    result.update({f"cramped/{n}": v for n, v in params(cramped).items()})
    # sg.save from every rank writes once; sg.load reads on rank 0 only.
    path = os.path.join(out, f"ckpt-{size}.npz")
    names = sg.save(path, step)
    result["saved"] = names == list(sg.checkpoint.read(path))
    before = params(step)
    # A bad shard on rank 1: every rank raises, no rank changes anything, the step goes on.
    X, y = data()
    bad = X[0, :2, :5] if comm.Get_rank() == 1 else X[0, :2]
    try:
        step(bad, y[0, :2])
        result["fault"] = "no error"
    except Exception as e:
        result["fault"] = f"{type(e).__name__}: {e}"
    result["fault_changed_nothing"] = all(np.array_equal(before[k], v)
                                          for k, v in params(step).items())
    step(X[0, :2], y[0, :2])  # still usable
    for p in step.params:
        p.set_value(np.zeros_like(p.get_value()))
    sg.load(path if comm.Get_rank() == 0 else path + ".not-there", step)
    result["loaded"] = all(np.array_equal(before[k], v) for k, v in params(step).items())
    try:
        sg.load(os.path.join(out, "missing.npz"), step)
        result["load_missing"] = "no error"
    except FileNotFoundError as e:
        result["load_missing"] = f"FileNotFoundError: {e}"
    # A model that differs on rank 1: an error on every rank, naming the parameter.
    try:
        build(sg.optim.SGD(0.1), comm, hidden=9 if comm.Get_rank() == 1 else 8)
        result["mismatch"] = "no error"
    except sg.DistributedError as e:
        result["mismatch"] = str(e)
    # Dropout per example and synchronised batch norms: one process's training.
    trained = global_batch(comm)
    normed = trained.pop("normed/step")
    trained.pop("dropout/step")
    result.update(trained)
    # A bad shard on rank 1 for the convnet: a ShapeError after its batch norms' forward
    # collectives; rank 1 plays the rest out, so every rank fails the step at once.
    X, y = images()
    before = state(normed)
    bad = X[0, :2, :, :5, :5] if comm.Get_rank() == 1 else X[0, :2]
    try:
        normed(bad, y[0, :2])
        result["normed_fault"] = "no error"
    except Exception as e:
        result["normed_fault"] = f"{type(e).__name__}: {e}"
    result["normed_fault_changed_nothing"] = all(np.array_equal(before[k], v)
                                                 for k, v in state(normed).items())
    # A rank that fails before its gradient function runs (no example input to count): it
    # plays out the whole step's collectives, the others fail in their first one.
    try:
        normed(y=y[0, :2]) if comm.Get_rank() == 1 else normed(X[0, :2], y[0, :2])
        result["normed_early_fault"] = "no error"
    except Exception as e:
        result["normed_early_fault"] = f"{type(e).__name__}: {e}"
    normed(X[0, :4], y[0, :4])  # still usable
    everyone = comm.gather(result)
    if comm.Get_rank() == 0:
        for r, other in enumerate(everyone):
            for k in ("fault", "mismatch", "fault_changed_nothing", "loaded", "load_missing",
                      "normed_fault", "normed_fault_changed_nothing", "normed_early_fault"):
                result[f"rank{r}/{k}"] = other[k]
        np.savez(os.path.join(out, f"train-{size}.npz"), **result)
    if os.path.exists(os.path.join(out, "half.npz")):
        resume(comm, out)


def resume(comm, out):
    step = build(optimizers()["sgd"], comm)
    sg.load(os.path.join(out, "half.npz"), step)
    train(step, comm, first=STEPS // 2)
    if comm.Get_rank() == 0:
        np.savez(os.path.join(out, f"resume-{comm.Get_size()}.npz"), **params(step))


EMPTY_SHARDS = [(5, 7, 0), (0, 4, 8)]  # examples of ranks 0, 1, 2 in two steps (of 12)


def scenario_empty_shard(comm, out):
    X, y = data()
    rank = comm.Get_rank()
    result = {}
    for mode in ("c", "debug", "py"):
        step = build(sg.optim.SGD(0.2, momentum=0.9), comm, mode=mode)
        losses = []
        for i, sizes in enumerate(EMPTY_SHARDS):
            first = sum(sizes[:rank])
            s = slice(first, first + sizes[rank])
            try:
                got = step(X[i, s], y[i, s])
            except Exception as e:  # every rank raises (the step fails on all at once)
                result[f"{mode}/error"] = f"{type(e).__name__}: {e}"
                break
            losses.append([got["loss"], got["ce"], got["l2"], got["accuracy"]])
        result[f"{mode}/losses"] = np.array(losses)
        result.update({f"{mode}/{n}": v for n, v in params(step).items()})
    if rank == 0:
        np.savez(os.path.join(out, f"empty_shard-{comm.Get_size()}.npz"), **result)


def scenario_stall(comm, out):
    step = build(sg.optim.SGD(0.1), comm, mode="py")
    if comm.Get_rank() == 1:
        return  # leaves without calling the step
    train(step, comm, 0, 1)


def scenario_killed(comm, out):
    step = build(sg.optim.SGD(0.1), comm, mode="py")
    if comm.Get_rank() == 1:
        os.kill(os.getpid(), 9)
    train(step, comm, 0, 1)


if __name__ == "__main__":
    from mpi4py import MPI
    scenario, folder = sys.argv[1], sys.argv[2]
    globals()[f"scenario_{scenario}"](MPI.COMM_WORLD, folder)

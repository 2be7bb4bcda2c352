"""Data-parallel training over MPI (SPEC section 13): ``sg.train_step(..., comm=)``.

The ranks run ``tests/mpi_worker.py`` under ``mpiexec -n 2``, ``-n 3`` and ``-n 4`` (MPICH
runs more ranks than cores); each launch costs a few seconds, so one launch per rank count
covers training, checkpoints and a failing shard, and the kernels come from the cache
after the first. Float32 tolerance: one process and N ranks sum the gradients in a
different order (the shards' sums, then across ranks), so after 50 steps the
parameters (of size up to 1) agree to ``1e-5 + 1e-5 * |p|`` -- about 100 float32 ulps;
measured: under 7e-7; the dropout MLP and the convnet with batch norms and dropout, 1.3e-6
(relative to ``1 + |p|``, every parameter, momentum, running statistic and loss).
"""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import symgrad as sg

MPI = pytest.importorskip("mpi4py.MPI", reason="the mpi extra (mpi4py, mpich) is not installed")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import mpi_worker as worker  # noqa: E402

ATOL = RTOL = 1e-5


def _mpiexec():
    # The launcher of the mpich wheel sits next to the interpreter (a venv's bin/).
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


needs_mpiexec = pytest.mark.skipif(_mpiexec() is None, reason="no mpiexec on PATH")


def launch(n, scenario, folder, timeout=180, limit=420):
    """Run the worker's ``scenario`` on ``n`` ranks: (returncode, output, seconds). The
    default ``timeout`` leaves room for the ranks' cold compiles on a loaded machine (a rank
    that compiles waits for none, but the others wait for it in the first allreduce)."""
    env = dict(os.environ, SYMGRAD_MPI_TIMEOUT=str(timeout),
               PYTHONPATH=os.pathsep.join([str(Path(sg.__file__).parent.parent),
                                           os.environ.get("PYTHONPATH", "")]))
    start = time.monotonic()
    proc = subprocess.run([_mpiexec(), "-n", str(n), sys.executable, str(HERE / "mpi_worker.py"),
                           scenario, str(folder)], env=env, capture_output=True, text=True,
                          timeout=limit, cwd=folder)
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process's results, then the 2-, 3- and 4-rank runs' (4 ranks on 2 cores: MPICH
    oversubscribes; the 3 and 4 ranks also resume from one process's checkpoint after 25 SGD
    steps)."""
    folder = tmp_path_factory.mktemp("mpi")
    reference = {}
    for key, opt in worker.optimizers().items():
        step = worker.build(opt)
        if key == "sgd":
            first = worker.train(step, None, 0, worker.STEPS // 2)
            sg.save(folder / "half.npz", step)
            losses = np.concatenate([first, worker.train(step, None, worker.STEPS // 2)])
        else:
            losses = worker.train(step, None)
        reference[key] = (worker.params(step), losses)
    reference["global"] = worker.global_batch()
    if _mpiexec() is None:
        return folder, reference, {}
    results = {}
    for n in (2, 3, 4):
        if n == 2:
            os.rename(folder / "half.npz", folder / "half.tmp")
        rc, out, _ = launch(n, "train", folder)
        assert rc == 0, out
        if n == 2:
            os.rename(folder / "half.tmp", folder / "half.npz")
        results[n] = dict(np.load(folder / f"train-{n}.npz"))
    return folder, reference, results


@pytest.mark.slow  # mpiexec -n 2, -n 3 and -n 4 training runs, each rank compiling
@needs_mpiexec
@pytest.mark.parametrize("n", [2, 3, 4])
@pytest.mark.parametrize("key", ["sgd", "adam"])
def test_ranks_with_uneven_shards_reach_the_parameters_of_one_process(runs, n, key):
    _, reference, results = runs
    params, losses = reference[key]
    for name, value in params.items():
        np.testing.assert_allclose(results[n][f"{key}/{name}"], value, atol=ATOL, rtol=RTOL,
                                   err_msg=f"{key} {name} on {n} ranks")
    # loss, ce, l2, accuracy of every step: the global means, as one process reports them
    np.testing.assert_allclose(results[n][f"{key}/losses"], losses, atol=ATOL, rtol=RTOL)
    assert results[n][f"{key}/identical"], "the ranks' parameters differ"
    # SGD's ranks (on this one machine) summed through shared memory; Adam's, built with
    # SYMGRAD_MPI_SHARED_MEMORY=0, through MPI's allreduce
    assert results[n][f"{key}/shared_memory"] == (key == "sgd")
    # (-1: MPI's allreduce, or a mode without kernels)
    assert results[n][f"{key}/copies"] in ((0, -1) if key == "sgd" else (-1,)), \
        "a gradient buffer was copied into the shared-memory window instead of written there"
    if key == "sgd":  # again, the last rank finding no room in /dev/shm: MPI's allreduce
        assert not results[n]["cramped/shared_memory"]
        for name, value in params.items():
            np.testing.assert_allclose(results[n][f"cramped/{name}"], value, atol=ATOL,
                                       rtol=RTOL, err_msg=f"{name} on {n} ranks, no room")


@pytest.mark.slow  # mpiexec -n 2, -n 3 and -n 4 training runs, each rank compiling
@needs_mpiexec
@pytest.mark.parametrize("n", [2, 3, 4])
@pytest.mark.parametrize("key", ["dropout", "normed"])
def test_dropout_and_batch_norm_on_ranks_reach_the_state_of_one_process(runs, n, key):
    # Dropout masks per example and synchronised batch norms (SPEC section 13): the
    # parameters, momentum, running statistics, batch counts and random streams after 50 SGD
    # steps on uneven shards (a rank with 0 or 1 examples on some steps), and every loss.
    _, reference, results = runs
    want = {k: v for k, v in reference["global"].items() if k.startswith(key + "/")}
    assert len(want) > 5
    for name, value in want.items():
        np.testing.assert_allclose(results[n][name], value, atol=ATOL, rtol=RTOL,
                                   err_msg=f"{name} on {n} ranks")
    assert results[n][f"{key}/identical"], "the ranks' states differ"


@pytest.mark.slow  # mpiexec -n 2, -n 3 and -n 4 training runs, each rank compiling
@needs_mpiexec
@pytest.mark.parametrize("n", [2, 3, 4])
def test_a_bad_shard_fails_a_synchronised_batch_norm_step_on_every_rank(runs, n):
    result = runs[2][n]
    assert str(result["rank1/normed_fault"]).startswith("ShapeError: matmul at"), \
        result["rank1/normed_fault"]
    for r in [0] + list(range(2, n)):
        text = str(result[f"rank{r}/normed_fault"])
        assert text.startswith("DistributedError: the train step failed on another rank, so "
                               "no rank changed its parameters: rank 1 raised ShapeError: "
                               "matmul"), text
    assert all(result[f"rank{r}/normed_fault_changed_nothing"] for r in range(n))
    # rank 1 without its example input: it fails before its kernel's collectives
    assert str(result["rank1/normed_early_fault"]).startswith(
        "TypeError: the train step was not given its input 'X'"), result["rank1/normed_early_fault"]
    for r in [0] + list(range(2, n)):
        text = str(result[f"rank{r}/normed_early_fault"])
        assert text.startswith("DistributedError: the train step failed on another rank, so "
                               "no rank changed its parameters: rank 1 raised TypeError"), text


@pytest.mark.slow  # mpiexec -n 2, -n 3 and -n 4 training runs, each rank compiling
@needs_mpiexec
@pytest.mark.parametrize("n", [2, 3, 4])
def test_a_failing_shard_fails_the_step_on_every_rank_and_changes_nothing(runs, n):
    result = runs[2][n]
    assert str(result["rank1/fault"]).startswith("ShapeError: matmul at")
    for r in [0] + list(range(2, n)):
        text = str(result[f"rank{r}/fault"])
        assert text.startswith("DistributedError: the train step failed on another rank, so "
                               "no rank changed its parameters: rank 1 raised ShapeError: "
                               "matmul"), text
    assert all(result[f"rank{r}/fault_changed_nothing"] for r in range(n))


@pytest.mark.slow  # mpiexec -n 2, -n 3 and -n 4 training runs, each rank compiling
@needs_mpiexec
@pytest.mark.parametrize("n", [2, 3, 4])
def test_save_writes_on_rank_0_and_load_broadcasts_its_values(runs, n):
    folder, _, results = runs
    result = results[n]
    assert result["saved"]
    # every rank loaded rank 0's file (the others were given a path that does not exist)
    assert all(result[f"rank{r}/loaded"] for r in range(n))
    assert str(result["rank0/load_missing"]).startswith("FileNotFoundError: [Errno 2]")
    assert str(result["rank1/load_missing"]).startswith("FileNotFoundError: (on rank 0) [Errno")
    assert not [p for p in os.listdir(folder) if p.endswith(".tmp")]
    # a checkpoint written by N ranks loads into one process
    step = worker.build(worker.optimizers()["adam"])
    sg.load(folder / f"ckpt-{n}.npz", step)
    for p in step.params:
        np.testing.assert_array_equal(p.get_value(), result[f"adam/{p.name}"])


@pytest.mark.slow  # mpiexec -n 2, -n 3 and -n 4 training runs, each rank compiling
@needs_mpiexec
@pytest.mark.parametrize("n", [3, 4])
def test_ranks_resume_a_checkpoint_of_one_process(runs, n):
    folder, reference, _ = runs
    resumed = np.load(folder / f"resume-{n}.npz")
    for name, value in reference["sgd"][0].items():
        np.testing.assert_allclose(resumed[name], value, atol=ATOL, rtol=RTOL, err_msg=name)


@pytest.mark.slow  # mpiexec -n 2, -n 3 and -n 4 training runs, each rank compiling
@needs_mpiexec
@pytest.mark.parametrize("n", [2, 3, 4])
def test_ranks_that_build_different_models_fail_naming_the_parameter(runs, n):
    for r in range(n):
        text = str(runs[2][n][f"rank{r}/mismatch"])
        assert text.startswith("building the data-parallel train step: the ranks built different "
                               "models"), text
        assert "hid.W: float32 of shape (6, 8) on rank 0, float32 of shape (6, 9) on rank 1" in text


@needs_mpiexec
@pytest.mark.parametrize("scenario", ["stall", "killed"])
def test_a_rank_that_stops_or_dies_ends_the_job_within_the_timeout(tmp_path, scenario):
    rc, out, seconds = launch(2, scenario, tmp_path, timeout=2)
    assert rc != 0
    assert seconds < 60, out
    if scenario == "stall":
        assert "DistributedError: rank 0 of 2: the train step's allreduce did not complete " \
               "within 2 s (SYMGRAD_MPI_TIMEOUT)" in out, out


@needs_mpiexec
def test_a_rank_with_an_empty_shard_trains_alike_in_every_mode(tmp_path):
    # issue #16: in mode "debug", the empty shard's gradient of its mean seeded with its
    # count (0 / 0) was a "NaN from finite inputs"; the shard weighs nothing in every mode
    rc, out, _ = launch(3, "empty_shard", tmp_path)
    assert rc == 0, out
    got = dict(np.load(tmp_path / "empty_shard-3.npz"))
    assert not [k for k in got if k.endswith("/error")], {k: str(v) for k, v in got.items()
                                                          if k.endswith("/error")}
    # one process, the global batch of 12 at both steps
    step = worker.build(sg.optim.SGD(0.2, momentum=0.9), mode="py")
    X, y = worker.data()
    want = [step(X[i], y[i]) for i in range(len(worker.EMPTY_SHARDS))]
    want = np.array([[w["loss"], w["ce"], w["l2"], w["accuracy"]] for w in want])
    params = worker.params(step)
    assert got["c/losses"].shape == want.shape
    for name, value in params.items():
        # mode "debug" runs mode "c"'s kernel, checked against the reference
        np.testing.assert_array_equal(got[f"debug/{name}"], got[f"c/{name}"])
        for mode in ("c", "py"):
            np.testing.assert_allclose(got[f"{mode}/{name}"], value, atol=ATOL, rtol=RTOL,
                                       err_msg=f"{name} in mode {mode}")
    np.testing.assert_array_equal(got["debug/losses"], got["c/losses"])
    for mode in ("c", "py"):
        np.testing.assert_allclose(got[f"{mode}/losses"], want, atol=ATOL, rtol=RTOL)


# --------------------------------------------------------------------------- one process

def _tiny(comm, mode="py"):
    x = sg.matrix("x")
    w = sg.shared(np.array([[1.0], [2.0]]), name="w")
    return sg.train_step(((x @ w) ** 2).mean(), [x], optimizer=sg.optim.SGD(0.1), comm=comm,
                         mode=mode), w


def test_comm_self_is_one_process():
    step, w = _tiny(MPI.COMM_SELF)
    plain, w2 = _tiny(None)
    x = np.array([[1.0, 0.5], [0.0, 1.0], [2.0, 1.0]])
    assert step(x) == plain(x)
    np.testing.assert_allclose(w.get_value(), w2.get_value(), rtol=1e-15)


def _normed(comm):
    X = sg.matrix("X")
    dense = sg.layers.Dense(3, 4, rng=0, name="d")
    norm = sg.layers.BatchNorm1D(4)
    drop = sg.layers.Dropout(0.3, rng=sg.random.RandomStream(5))
    loss = (drop(norm(dense(X), training=True)) ** 2).mean()
    step = sg.train_step(loss, [X], optimizer=sg.optim.Adam(0.01), comm=comm, mode="py")
    return step, dense.params + [norm.weight, norm.bias, norm.running_mean, norm.running_var,
                                 norm.num_batches_tracked]


def test_running_statistics_and_random_streams_on_comm_self_are_one_process():
    # The running statistics go through the allreduce as a weighted mean; rank 0's stream
    # keeps its key: on one rank the data-parallel step is the ordinary one.
    x = np.random.default_rng(3).standard_normal((6, 3))
    (step, state), (plain, state2) = _normed(MPI.COMM_SELF), _normed(None)
    for _ in range(3):
        assert step(x) == pytest.approx(plain(x), rel=1e-12)
    for a, b in zip(state, state2):
        np.testing.assert_allclose(a.get_value(), b.get_value(), rtol=1e-12, err_msg=a.name)


def test_an_lr_given_as_an_input_reaches_the_update():
    x, lr = sg.matrix("x"), sg.scalar("lr")
    ws = [sg.shared(np.array([[1.0], [2.0]]), name="w") for _ in range(2)]
    steps = [sg.train_step(((x @ w) ** 2).mean(), [x, sg.In(lr, value=0.1)],
                           optimizer=sg.optim.SGD(lr), comm=comm, mode="py")
             for w, comm in zip(ws, (MPI.COMM_SELF, None))]
    xv = np.array([[1.0, 0.5], [0.0, 1.0]])
    for step in steps:
        step(xv)
        step(xv, lr=0.5)
    np.testing.assert_allclose(ws[0].get_value(), ws[1].get_value(), rtol=1e-14)
    assert not np.allclose(ws[0].get_value(), [[1.0], [2.0]])


def test_an_lr_given_as_an_input_reaches_the_update_of_a_step_with_dropout():
    # the gradient function takes the shard's start too (its draws per example); the update
    # function only the step's own inputs
    x, lr = sg.matrix("x"), sg.scalar("lr")
    ws = [sg.shared(np.array([[1.0], [2.0]]), name="w") for _ in range(2)]
    steps = [sg.train_step((sg.nn.dropout(x @ w, 0.5, sg.random.RandomStream(3)) ** 2).mean(),
                           [x, sg.In(lr, value=0.1)], optimizer=sg.optim.SGD(lr), comm=comm,
                           mode="py") for w, comm in zip(ws, (MPI.COMM_SELF, None))]
    assert steps[0]._parallel.per_example == 1
    xv = np.array([[1.0, 0.5], [0.0, 1.0], [2.0, 1.0]])
    for step in steps:
        step(xv)
        step(xv, lr=0.5)
    np.testing.assert_allclose(ws[0].get_value(), ws[1].get_value(), rtol=1e-14)
    assert not np.allclose(ws[0].get_value(), [[1.0], [2.0]])


def test_an_empty_global_batch_is_an_error_that_changes_nothing():
    step, w = _tiny(MPI.COMM_SELF)
    with pytest.raises(ValueError, match="the global batch is empty: every rank called the "
                                         "train step with 0 examples"):
        step(np.zeros((0, 2)))
    np.testing.assert_array_equal(w.get_value(), [[1.0], [2.0]])


def test_comm_must_be_an_mpi_communicator():
    with pytest.raises(TypeError, match="comm must be an mpi4py communicator such as "
                                        "mpi4py.MPI.COMM_WORLD, got object"):
        _tiny(object())


def test_comm_without_mpi4py_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match=r'needs mpi4py and an MPI library, which are not '
                                          r'installed .*pip install "symgrad\[mpi\]"'):
        _tiny(MPI.COMM_WORLD)


def test_more_than_four_ranks_sum_with_mpis_allreduce():
    # Each rank's update would read every rank's buffer: past 4 ranks, MPI's allreduce moves
    # less. The decision comes before any collective (this communicator has none).
    from symgrad.distributed import NodeSum

    class Five(MPI.Intracomm):
        def Get_size(self):
            return 5

        def Ibarrier(self):
            raise AssertionError("a collective: the window was considered")

        Split_type = Iallreduce = Ibarrier

    assert NodeSum.of(Five(MPI.COMM_SELF), 1024, "building") is None
    assert NodeSum.of(MPI.COMM_SELF, 1024, "building") is None  # one rank: nothing to sum


def test_a_bad_shared_memory_setting_is_named(monkeypatch):
    from symgrad.distributed import shared_memory
    for text, want in (("0", False), ("1", True), (" 1 ", True)):
        monkeypatch.setenv("SYMGRAD_MPI_SHARED_MEMORY", text)
        assert shared_memory() is want
    monkeypatch.delenv("SYMGRAD_MPI_SHARED_MEMORY")
    assert shared_memory() is True
    monkeypatch.setenv("SYMGRAD_MPI_SHARED_MEMORY", "yes")
    with pytest.raises(ValueError, match="SYMGRAD_MPI_SHARED_MEMORY must be 0 or 1, got 'yes'"):
        shared_memory()


def test_a_bad_timeout_setting_is_named(monkeypatch):
    step, _ = _tiny(MPI.COMM_SELF)
    monkeypatch.setenv("SYMGRAD_MPI_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="SYMGRAD_MPI_TIMEOUT must be a positive number of "
                                         "seconds, got 'soon'"):
        step(np.ones((1, 2)))


@pytest.mark.slow
@needs_mpiexec
def test_the_distributed_example_matches_one_process(tmp_path):
    pytest.importorskip("sklearn")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(sg.__file__).parent.parent),
                                                       os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([_mpiexec(), "-n", "2", sys.executable, "-m", "mpi4py",
                           str(HERE.parent / "examples" / "train_distributed.py"), "--check",
                           "--out", str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    accuracy = float(re.search(r"test accuracy: ([0-9.]+)", done.stdout).group(1))
    assert accuracy >= 0.95, done.stdout
    diff = float(re.search(r"largest parameter difference (\S+)", done.stdout).group(1))
    assert diff < 1e-12, done.stdout   # float64: the order of the sums only
    assert (tmp_path / "digits_distributed.npz").exists()


# --------------------------------------------------------------------------- the global batch
#
# What N ranks compute as one process does, checked in one process: a shard's draws per
# example are one process's rows of the global batch, and a synchronised batch norm is the
# ordinary one when the sum over the ranks is the sum over one.

def _masked(rows=None):
    x = sg.matrix("x")
    h = sg.tanh(x @ sg.shared(np.full((3, 5), 0.5), name="w"))
    rng = sg.random.RandomStream(4)
    mask = rng.bernoulli(0.5, size=h.shape, dtype="float64")
    noise = rng.normal(size=(2, 3))          # its size is no example count
    return x, rng, [h * mask + mask, noise]


@pytest.mark.parametrize("mode", ["py", "c"])
def test_a_shard_draws_the_rows_of_one_process_from_its_start(mode):
    from symgrad.distributed import global_batch_graph
    x, rng, outs = _masked()
    X = np.random.default_rng(0).standard_normal((7, 3))
    whole = sg.function([x], outs, mode=mode)(X)
    start = sg.tensor("start", dtype="int64", shape=())
    rewritten, per_example, norms = global_batch_graph(outs, x, start)
    assert (per_example, norms) == (1, 0)
    shard = sg.function([x, start], rewritten, mode=mode)
    for lo, hi in ((0, 3), (3, 4), (4, 7), (5, 5)):
        rng.seed(4)
        got, noise = shard(X[lo:hi], lo)
        np.testing.assert_array_equal(got, whole[0][lo:hi])
        np.testing.assert_array_equal(noise, whole[1])  # the same draw on every rank
    assert rng.state.get_value()[1] == 2  # advanced by the call's two draws, any shard


def test_draws_whose_length_is_not_the_example_count_are_left_as_they_are():
    from symgrad.distributed import global_batch_graph
    x, _, outs = _masked()
    start = sg.tensor("start", dtype="int64", shape=())
    # the example input is another one: nothing proves the draws' lengths are its own
    other = sg.matrix("other")
    rewritten, per_example, _ = global_batch_graph(outs, other, start)
    assert per_example == 0 and all(a is b for a, b in zip(rewritten, outs))
    # an example count known when the graph is built is no shard's
    fixed = sg.tensor("fixed", shape=(7, 3))
    assert global_batch_graph(outs, fixed, start)[1] == 0


def test_draws_after_convolutions_pooling_and_batch_norms_are_per_example():
    from symgrad.distributed import global_batch_graph
    x = sg.tensor("x", shape=(None, 1, None, None))
    h = sg.layers.Conv2D(1, 2, 3, rng=0)(x)
    h = sg.layers.MaxPool2D(2)(sg.layers.BatchNorm2D(2)(h, training=True))
    h = sg.layers.AvgPool2D(1)(h)
    h = sg.layers.LayerNorm(2)(sg.layers.Flatten()(sg.layers.AvgPool2D(2)(h)))
    out = sg.nn.dropout(h, 0.5, sg.random.RandomStream(0))
    start = sg.tensor("s", dtype="int64", shape=())
    assert global_batch_graph([out], x, start)[1:] == (1, 1)


def _synchronised_norm(mode, shape):
    from symgrad.distributed import global_batch_graph
    x = sg.tensor("x", shape=(None,) * len(shape))
    w = sg.shared(np.linspace(0.5, 1.5, shape[1]), name="w")
    b = sg.shared(np.linspace(-1, 1, shape[1]), name="b")
    rm, rv = sg.shared(np.zeros(shape[1])), sg.shared(np.ones(shape[1]))
    out, updates = sg.nn.batch_norm(x, rm, rv, w, b, training=True)
    loss = (out ** 3).mean()
    outs = [loss] + sg.grad(loss, [x, w, b]) + [e for _, e in updates]
    plain = sg.function([x], outs, mode=mode)
    synced, _, norms = global_batch_graph(outs, x, sg.tensor("s", dtype="int64", shape=()))
    assert norms == 1
    assert "synchronised" in sg.debugprint(synced[1])
    return plain, sg.function([x], synced, mode=mode)


@pytest.mark.parametrize("mode", ["py", "c"])
@pytest.mark.parametrize("shape", [(6, 3), (4, 2, 3, 5)])
def test_a_synchronised_batch_norm_over_one_rank_is_the_batch_norm(mode, shape):
    from symgrad import distributed
    plain, synced = _synchronised_norm(mode, shape)
    X = np.random.default_rng(1).standard_normal(shape) * 3 + 1
    sync = distributed._Sync(MPI.COMM_SELF, 2 * shape[1] + 1, 3)
    distributed._install_hook()
    sync.begin()
    distributed._ACTIVE.sync = sync
    try:
        got = synced(X)
    finally:
        distributed._ACTIVE.sync = None
    assert sync.done == 3  # two sums in the forward, one in the gradient
    for a, b in zip(got, plain(X)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("mode", ["py", "c"])
def test_a_synchronised_batch_norm_outside_a_step_is_an_error(mode):
    from symgrad import distributed
    _, synced = _synchronised_norm(mode, (6, 3))
    distributed._install_hook()
    with pytest.raises(Exception, match="batch norm synchronised across ranks ran outside a "
                                        "data-parallel train step"):
        synced(np.ones((6, 3)))

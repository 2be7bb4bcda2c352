"""Data-parallel MLP train step over MPI: 1 rank x 1 thread against 2 ranks x 1 thread.

The model, data and optimizer of ``bench_mlp.py`` (float32, 784 -> 512 relu -> 512
relu -> 10, softmax cross-entropy mean, SGD) as ``sg.train_step``. At a global batch
of 256 and 1024 it measures, in one ``mpiexec -n 2`` run with the rounds interleaved
(load on the machine hits every variant alike):

- 1 rank: the ordinary step (``comm=None``, updates fused into the gemms), on rank 0
  while rank 1 sleeps; and the data-parallel step on ``COMM_SELF`` (the seam: two
  functions, the buffer, an allreduce of one rank);
- 2 ranks, strong scaling: each rank half of the global batch;
- 2 ranks, weak scaling: each rank a whole batch (global batch twice as large);
- 1 rank at B/2, alone: the smaller products' own cost;
- the ceiling: the plain step (no MPI) at B/2 on both cores at once, each process on its
  own: what the machine's shared cache, memory bandwidth and clock leave to 2 ranks, which
  no implementation avoids (efficiency T(1 rank, B) / (2 T(ceiling)));
- the strong-scaling step again with MPI's allreduce (``SYMGRAD_MPI_SHARED_MEMORY=0``, as
  between machines) in place of the shared-memory window (``symgrad.distributed.NodeSum``);
- the allreduce alone: the step's buffer (every gradient, the losses, count and flag)
  made every rank's, after a barrier: through the window, the barrier (the gradient
  function wrote the buffer into the window; the sums are then made in the update
  function's loops); MPI's, the allreduce;
- where a strong-scaling step goes: the same step with its parts timed on each rank (wall
  and CPU, the mean of the best round's calls): the gradient function, the allreduce (the
  wait for the other rank included: the allreduce alone is its own cost), the update
  function, and the rest (Python between them); and "uneven steps": how much later, on
  average, the slower rank's gradient function ended than the slower rank's mean says
  (the mean over steps of max(g0, g1) less the larger of the ranks' means of g). The
  ranks wait for each other every step, so a step that is slow on one core -- and on this
  VM a core's step varies by +-15% from one moment to the next -- holds both up; the
  ceiling's processes never wait, so that cost is in the gap between the strong row and
  the ceiling row, and no exchange can remove it.

Efficiency: strong = T(1 rank, B) / (2 T(2 ranks, B/2 each)); weak = T(1 rank, B) /
T(2 ranks, B each). Each rank is pinned to a core of its own. Two estimates: from the
best round of each variant ("efficiency"), and the median over the rounds of each round's
own ratio ("median of rounds": the 1-rank step and the 2-rank step measured seconds apart,
so a slow spell of the machine weighs on both).

    python bench/bench_distributed.py          # launches mpiexec -n 2 itself
"""

import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from bench_mlp import init, symgrad_model  # noqa: E402
from common import cores, rng, table  # noqa: E402

BATCHES = (256, 1024)
ROUNDS = 7
SECONDS = 0.25  # per variant and round


def sleep_until_all_arrive(comm):
    """A barrier that sleeps instead of spinning (rank 1 must not take a core from rank 0's
    1-rank measurements)."""
    req = comm.Ibarrier()
    while not req.Test():
        time.sleep(1e-3)


def timed(comm, fn, args, calls, warm=True):
    """(wall, CPU) seconds per call of ``fn(*args)`` over ``calls`` calls, the ranks
    starting together, after one call untimed (``warm``: the first call after another
    variant ran pays 0.5-1 ms to bring its kernel and buffers back into the caches). The CPU time leaves out the time other processes of a loaded
    machine took the core, but counts a rank's wait for the other: it polls (yielding its
    core) for up to 0.1 s before it sleeps (symgrad.distributed.wait), so on a loaded
    machine, where the other rank is often off its core, the 2-rank CPU columns grow by
    the waits that the wall-clock columns show too."""
    if warm:
        fn(*args)
    comm.Barrier()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(calls):
        fn(*args)
    return np.array([time.perf_counter() - t0, time.process_time() - c0]) / calls


def calls_for(comm, fn, args):
    """How many calls of ``fn`` last about SECONDS (rank 0's estimate, shared by all)."""
    fn(*args)
    t0 = time.perf_counter()
    fn(*args)
    per = time.perf_counter() - t0
    return comm.bcast(max(3, int(SECONDS / max(per, 1e-6))))


def build(params, comm):
    import symgrad as sg

    X, y, flat, loss = symgrad_model(params)
    return sg.train_step(loss, [X, y], params=flat, optimizer=sg.optim.SGD(0.01), comm=comm)


def allreduce_timer(step):
    """The step's sum over the ranks of its buffer (shared memory or MPI's allreduce). In
    shared memory the step's kernel writes the buffer into the window's slot (NodeSum.place),
    so what is timed is what the step does: the barrier (and no copy)."""
    dp = step._parallel
    buf = np.ones(dp.length, dtype="float32")
    node = dp.node_sum
    if node is None:
        return lambda: dp._sum(buf)

    def exchange():
        slot = node.slots[node.rank][node.calls & 1][:buf.nbytes].view(buf.dtype)
        return dp._sum(slot)
    return exchange


class Parts:
    """The step's gradient function, allreduce and update function, each timed (wall and
    CPU seconds summed over the calls) while ``on``."""

    NAMES = ("gradients", "allreduce", "update")

    def __init__(self, step):
        self.sums = {k: np.zeros(2) for k in self.NAMES}
        self.on = False
        self.gradient_calls = []  # wall seconds of each gradient call while on
        step.function = self.timed("gradients", step.function)
        step.update_function = self.timed("update", step.update_function)
        step._parallel._sum = self.timed("allreduce", step._parallel._sum)

    def timed(self, name, fn):
        def call(*args, **kwargs):
            if not self.on:
                return fn(*args, **kwargs)
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                wall = time.perf_counter() - t0
                self.sums[name] += (wall, time.process_time() - c0)
                if name == "gradients":
                    self.gradient_calls.append(wall)
        return call

    def run(self, comm, step, args, calls):
        """Per call: ``{part: (wall, CPU)}`` with ``"rest"`` and ``"step"``, this rank's."""
        for v in self.sums.values():
            v[:] = 0
        self.gradient_calls = []
        step(*args)  # warm, untimed (see timed)
        self.on = True
        try:
            total = timed(comm, step, args, calls, warm=False) * calls
        finally:
            self.on = False
        out = {k: v / calls for k, v in self.sums.items()}
        out["rest"] = (total - sum(self.sums.values())) / calls
        out["step"] = total / calls
        out["gradient calls"] = np.array(self.gradient_calls)
        return out


def run_child():
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    if hasattr(os, "sched_setaffinity"):
        mine = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {mine[rank % len(mine)]})
    r = rng()
    params = init(r)
    single = build(params, None)  # every rank: the ceiling runs it on both
    seam = build(params, MPI.COMM_SELF) if rank == 0 else None
    dist = build(params, comm)
    os.environ["SYMGRAD_MPI_SHARED_MEMORY"] = "0"  # the same step summing with MPI's allreduce
    dist_mpi = build(params, comm)
    del os.environ["SYMGRAD_MPI_SHARED_MEMORY"]
    parted = build(params, comm)  # the same step, its parts timed (see Parts)
    parts = Parts(parted)
    length = dist._parallel.length
    rows, part_rows = [], []
    for B in BATCHES:
        X = r.standard_normal((2 * B, 784)).astype("float32")
        y = r.integers(0, 10, 2 * B)
        half = slice(rank * B // 2, (rank + 1) * B // 2)
        whole = slice(rank * B, (rank + 1) * B)
        variants = {"strong": (dist, (X[half], y[half])), "weak": (dist, (X[whole], y[whole])),
                    "strong, MPI": (dist_mpi, (X[half], y[half])),
                    "allreduce": (allreduce_timer(dist), ()),
                    "allreduce, MPI": (allreduce_timer(dist_mpi), ()),
                    "ceiling": (single, (X[half], y[half]))}
        counts = {k: calls_for(comm, fn, a) for k, (fn, a) in variants.items()}
        if rank == 0:
            solo = {"1 rank": (single, (X[:B], y[:B])),
                    "1 rank, comm=COMM_SELF": (seam, (X[:B], y[:B])),
                    "1 rank, B/2": (single, (X[:B // 2], y[:B // 2]))}
            solo_counts = {k: calls_for(MPI.COMM_SELF, fn, a) for k, (fn, a) in solo.items()}
        best, split, rounds = {}, None, {}
        for _ in range(ROUNDS):
            if rank == 0:
                for k, (fn, a) in solo.items():
                    t = timed(MPI.COMM_SELF, fn, a, solo_counts[k])
                    best[k] = np.minimum(best.get(k, np.inf), t)
                    rounds.setdefault(k, []).append(t)
            sleep_until_all_arrive(comm)
            for k, (fn, a) in variants.items():
                t = np.empty(2)
                comm.Allreduce(timed(comm, fn, a, counts[k]), t, op=MPI.MAX)
                best[k] = np.minimum(best.get(k, np.inf), t)
                rounds.setdefault(k, []).append(t)
            got = parts.run(comm, parted, (X[half], y[half]), counts["strong"])
            slowest = comm.allreduce(got["step"][0], op=MPI.MAX)
            if split is None or slowest < split[0]:
                split = (slowest, comm.gather(got, root=0))
        if rank == 0:
            rows += report(B, best, {k: np.array(v) for k, v in rounds.items()})
            part_rows += report_parts(B, split[1], best)
    if rank == 0:
        print(f"allreduce buffer: {length:,} float32 = {length * 4 / 2**20:.2f} MiB per step; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores. Wall-clock "
              f"and CPU time (per rank, the larger), best of {ROUNDS} interleaved rounds")
        table(rows, ["B", "variant", "global batch", "ms/step", "examples/s", "efficiency",
                     "median of rounds", "CPU ms/step", "CPU efficiency", "allreduce ms (CPU)"])
        print(f"\nWhere a 2-rank strong-scaling step goes (ms wall / ms CPU per step, each rank; "
              f"the round whose slower rank was fastest; 'ideal': half of 1 rank's step; "
              f"'uneven steps' (wall): the slower rank's gradients per step beyond its mean)")
        table(part_rows, ["B", "rank", "step", "gradients", "allreduce (wait incl.)",
                          "allreduce alone", "update", "rest", "uneven steps", "ideal"])


def report(B, best, rounds):
    """Table rows for global batch ``B`` from the best (wall, CPU) times and each round's
    (``rounds``: variant -> array of (wall, CPU) per round)."""
    t1 = best["1 rank"]
    ar = best["allreduce"]
    fmt = lambda t: f"{t[0] * 1e3:.2f} ({t[1] * 1e3:.2f})"  # noqa: E731
    variants = [("1 rank x 1 thread", B, "1 rank", 1),
                ("1 rank, comm=COMM_SELF", B, "1 rank, comm=COMM_SELF", 1),
                ("1 rank, B/2 alone", B // 2, "1 rank, B/2", 1),
                ("ceiling: 2 processes, B/2 each, no MPI", B, "ceiling", 2),
                ("2 ranks, strong (B/2 each)", B, "strong", 2),
                ("2 ranks, strong, MPI's allreduce", B, "strong, MPI", 2),
                ("2 ranks, weak (B each)", 2 * B, "weak", 2)]
    rows = []
    for name, global_batch, key, ranks in variants:
        t = best[key]
        # efficiency: examples per second per process against 1 rank's at batch B
        eff = (global_batch / t) / (ranks * B / t1)
        # the same, round by round (the 1-rank step of that round), then the median
        paired = np.median((global_batch / rounds[key][:, 0]) /
                           (ranks * B / rounds["1 rank"][:, 0]))
        rows.append([B, name, global_batch, f"{t[0] * 1e3:.2f}", f"{global_batch / t[0]:,.0f}",
                     f"{eff[0]:.2f}", f"{paired:.2f}", f"{t[1] * 1e3:.2f}", f"{eff[1]:.2f}",
                     fmt(best["allreduce, MPI"] if "MPI" in name else ar)
                     if name.startswith("2") else ""])
    return rows


def report_parts(B, per_rank, best):
    """Table rows: each rank's parts of a strong-scaling step at global batch ``B``."""
    fmt = lambda t: f"{t[0] * 1e3:.2f} / {t[1] * 1e3:.2f}"  # noqa: E731
    calls = np.array([got["gradient calls"] for got in per_rank])  # ranks x steps
    uneven = calls.max(axis=0).mean() - calls.mean(axis=1).max()
    return [[B, r, fmt(got["step"]), fmt(got["gradients"]), fmt(got["allreduce"]),
             fmt(best["allreduce"]), fmt(got["update"]), fmt(got["rest"]),
             f"{uneven * 1e3:.2f}" if r == 0 else "", fmt(best["1 rank"] / 2)]
            for r, got in enumerate(per_rank)]


def main():
    print(f"Data-parallel MLP train step, float32, 784 -> 512 -> 512 -> 10, SGD; {cores()} cores; "
          f"every rank 1 thread")
    env = dict(os.environ, SYMGRAD_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    launcher = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    launcher = launcher if os.path.exists(launcher) else "mpiexec"
    # -m mpi4py: an uncaught exception on one rank aborts the job instead of leaving the
    # other waiting in a collective
    subprocess.run([launcher, "-n", "2", sys.executable, "-m", "mpi4py", __file__, "--child"],
                   env=env, check=True)


if __name__ == "__main__":
    run_child() if "--child" in sys.argv else main()

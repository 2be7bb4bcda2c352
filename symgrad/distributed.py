"""Data-parallel training over MPI: ``sg.train_step(..., comm=comm)`` (SPEC section 13).

Every rank holds the whole model and calls the step with its own shard of the
global batch. A step built with ``comm`` is two compiled functions and one
collective between them:

1. the *gradient function* runs forward and backward on the shard and writes
   one flat vector: every gradient, the new value of every running statistic
   (batch norm), then every loss and summary, then two free slots;
2. Python scales that vector by the shard's example count ``n`` and fills the
   two slots with ``n`` and an error flag; one ``allreduce`` (sum) over the
   vector (split into buckets when it is large) gives every rank the sums
   ``sum_r n_r * g_r``, ``N = sum_r n_r`` and the number of ranks that failed;
3. the *update function* reads the summed vector, divides by ``N`` -- the
   gradient of the global batch mean, whatever the shard sizes -- and applies
   the optimizer's updates (clipping by the global norm of that gradient,
   weight decay, Adam's moments) identically on every rank.

The weighting is exact for losses that are means over the examples of the
shard (the usual ``.mean()``) and for terms that do not depend on the batch (a
weight penalty: every rank computes the same value, and its weighted mean is
itself). The number of examples of a shard is the length of axis 0 of the
step's first input that has an axis.

Collectives are non-blocking and polled against a deadline
(``SYMGRAD_MPI_TIMEOUT`` seconds, default 300): a rank that raised takes part
in the step's allreduce with its error flag set, so the others raise
:class:`~symgrad.DistributedError` naming it and its error at once; a rank
that died or stopped calling makes the others raise it at the deadline. After
a timeout the communicator is unusable (a collective is still pending), so the
process ends through ``MPI_Abort`` when it exits instead of hanging in
``MPI_Finalize``.

When the step is built, the ranks compare their parameters and optimizer
state (names, shapes, dtypes; a mismatch is an error naming the variable on
every rank) and rank 0's values are broadcast. Random streams get a key per
rank (rank 0 keeps its own), so dropout masks of different shards are
independent.
"""

import atexit
import os
import pickle
import sys
import time

import numpy as np

from . import dtypes as _dt
from .errors import DistributedError
from .graph import free_inputs, tensor
from .ops import cast, concatenate, stack, zeros
from .ops import round as round_

__all__ = ["check_comm", "timeout", "DataParallel"]

_INSTALL = ('pip install "symgrad[mpi]" (it installs mpi4py and the MPICH library from the '
            'package index), then launch with: mpiexec -n 4 python train.py')
_BUCKET = 1 << 24       # elements per allreduce call: 64 MiB of float32
_SPIN = 2e-3            # poll without sleeping this long first (s): a step's allreduce is short
_MESSAGE = 1024         # bytes of a failed rank's error message that the others get
_BROKEN = []            # communicators left with a pending collective (see _abort_at_exit)


# --------------------------------------------------------------------------- MPI, lazily

def mpi():
    """The ``mpi4py.MPI`` module, or an ImportError that says how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(f"sg.train_step(..., comm=...) needs mpi4py and an MPI library, which "
                          f"are not installed ({e}); {_INSTALL}") from None
    return MPI


def check_comm(comm):
    """``comm`` if it is an mpi4py intracommunicator."""
    MPI = mpi()
    if not isinstance(comm, MPI.Intracomm):
        raise TypeError(f"comm must be an mpi4py communicator such as mpi4py.MPI.COMM_WORLD, got "
                        f"{type(comm).__name__}")
    return comm


def timeout():
    """Seconds a collective may wait for the other ranks (``SYMGRAD_MPI_TIMEOUT``)."""
    text = os.environ.get("SYMGRAD_MPI_TIMEOUT", "300")
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"SYMGRAD_MPI_TIMEOUT must be a positive number of seconds, got {text!r}")
    return value


# --------------------------------------------------------------------------- collectives

def _abort_at_exit():
    # A rank that timed out still has a collective pending: MPI_Finalize would wait for
    # the rank that never comes. MPI_Abort ends the whole job instead (after Python has
    # printed the error), which is what a failed job should do.
    if _BROKEN:
        sys.stdout.flush()
        sys.stderr.flush()
        # mpiexec forwards a rank's output through a pipe of its own: the abort kills
        # the job before the last of it (the error's message) was always passed on.
        time.sleep(0.5)
        _BROKEN[0].Abort(1)


atexit.register(_abort_at_exit)


def wait(comm, request, what):
    """Wait for ``request`` (``what`` names it in the error) until the deadline."""
    limit = timeout()
    start = time.monotonic()
    nap = 1e-5
    while not request.Test():
        waited = time.monotonic() - start
        if waited > limit:
            if not _BROKEN:
                _BROKEN.append(comm)
            raise DistributedError(
                f"rank {comm.Get_rank()} of {comm.Get_size()}: {what} did not complete within "
                f"{limit:g} s (SYMGRAD_MPI_TIMEOUT): another rank failed, left, or stopped "
                f"calling it. The communicator is unusable now; this process ends through "
                f"MPI_Abort when it exits")
        if waited > _SPIN:
            time.sleep(nap)
            nap = min(2 * nap, 5e-4)  # a late wake-up delays the step by as much


def allreduce_sum(comm, buf, what):
    """Sum the contiguous 1-d ``buf`` over the ranks, in place (buckets of ``_BUCKET``)."""
    MPI = mpi()
    requests = [comm.Iallreduce(MPI.IN_PLACE, buf[i:i + _BUCKET], op=MPI.SUM)
                for i in range(0, max(buf.size, 1), _BUCKET)]
    for req in requests:
        wait(comm, req, what)


def bcast(comm, buf, what):
    """Rank 0's ``buf`` (contiguous) on every rank, in place."""
    wait(comm, comm.Ibcast(buf, root=0), what)


def allgather_objects(comm, obj, what):
    """Every rank's picklable ``obj``, in rank order (two non-blocking collectives)."""
    data = np.frombuffer(pickle.dumps(obj), dtype=np.uint8)
    sizes = np.zeros(comm.Get_size(), dtype=np.int64)
    wait(comm, comm.Iallgather(np.array([data.size], dtype=np.int64), sizes), what)
    out = np.empty(int(sizes.sum()), dtype=np.uint8)
    counts = [int(s) for s in sizes]
    wait(comm, comm.Iallgatherv(data, [out, counts]), what)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return [pickle.loads(out[a:b].tobytes()) for a, b in zip(offsets[:-1], offsets[1:])]


def bcast_object(comm, obj, what):
    """Rank 0's picklable ``obj`` on every rank (``obj`` is ignored elsewhere)."""
    root = comm.Get_rank() == 0
    data = np.frombuffer(pickle.dumps(obj), dtype=np.uint8) if root else None
    size = np.array([data.size if root else 0], dtype=np.int64)
    bcast(comm, size, what)
    buf = data.copy() if root else np.empty(int(size[0]), dtype=np.uint8)
    bcast(comm, buf, what)
    return obj if root else pickle.loads(buf.tobytes())


def bcast_arrays(comm, arrays, what):
    """Rank 0's ``arrays`` on every rank (elsewhere they give the shapes and dtypes), as new
    arrays: one broadcast per dtype, of the values packed together."""
    by_dtype = {}
    for i, a in enumerate(arrays):
        by_dtype.setdefault(a.dtype.str, []).append(i)
    out = [None] * len(arrays)
    for dtype, members in by_dtype.items():
        buf = np.concatenate([np.ascontiguousarray(arrays[i]).reshape(-1) for i in members])
        bcast(comm, buf, what)
        pos = 0
        for i in members:
            out[i] = buf[pos:pos + arrays[i].size].reshape(arrays[i].shape).copy()
            pos += arrays[i].size
    return out


def bcast_values(comm, variables, what):
    """Rank 0's values of the shared ``variables`` on every rank."""
    values = bcast_arrays(comm, [sv.get_value(borrow=True) for sv in variables], what)
    if comm.Get_rank() != 0:
        for sv, value in zip(variables, values):
            sv.set_value(value, borrow=True)


def check_same_model(comm, variables, what):
    """Raise DistributedError on every rank if the shapes or dtypes of ``variables`` (shared
    variables) differ from rank 0's, naming each variable that differs and the ranks."""
    mine = [(sv.name or f"#{i}", tuple(sv.get_value(borrow=True).shape), sv.dtype)
            for i, sv in enumerate(variables)]
    everyone = allgather_objects(comm, mine, what)
    problems = []
    for rank, theirs in enumerate(everyone[1:], start=1):
        for (name, s0, d0), (other, s1, d1) in zip(everyone[0], theirs):
            if (name, s0, d0) != (other, s1, d1):
                here = name if name == other else f"{name} (rank 0) / {other} (rank {rank})"
                problems.append(f"{here}: {d0} of shape {s0} on rank 0, {d1} of shape {s1} on "
                                f"rank {rank}")
        if len(theirs) != len(everyone[0]):
            problems.append(f"rank 0 has {len(everyone[0])} parameters and optimizer state "
                            f"variables, rank {rank} {len(theirs)}")
    if problems:
        shown = problems[:10] + [f"... and {len(problems) - 10} more"] * (len(problems) > 10)
        raise DistributedError(f"{what}: the ranks built different models; every rank must "
                               f"build the same parameters and optimizer:\n  " + "\n  ".join(shown))


def decorrelate_streams(comm, states):
    """Give each rank its own key for the random streams ``states`` (rank 0 keeps rank 0's):
    the shards draw independent dropout masks, and rank 0's state is what sg.save keeps."""
    from .random import _key_of
    rank = comm.Get_rank()
    if rank == 0:
        return
    for sv in states:
        value = sv.get_value()
        value[0] = _key_of(int(value[0]) + rank)
        sv.set_value(value, borrow=True)


# --------------------------------------------------------------------------- the step

def _flat(v, dtype):
    v = v if v.dtype == dtype else cast(v, dtype)
    return v.reshape((-1,))


class DataParallel:
    """The two compiled functions and the allreduce of one data-parallel train step.

    Built by :class:`symgrad.train.TrainStep` when it is given ``comm``; the step's
    ``function`` is :attr:`gradient_function`, ``update_function`` the second.
    """

    def __init__(self, comm, params, grads, layer_updates, outputs):
        self.comm = comm
        self.params = params
        # Counters (batch norm's num_batches_tracked) follow from shared values alone, the
        # same on every rank: the update function computes them. Whatever reads the shard
        # goes through the buffer, as the ranks' weighted mean.
        self.counters = [(sv, e) for sv, e in layer_updates
                         if not _dt.is_float(sv.dtype) and not free_inputs([e])]
        self.layer_updates = [(sv, e) for sv, e in layer_updates
                              if (sv, e) not in self.counters]
        floats = [p.dtype for p in params] + [sv.dtype for sv, _ in layer_updates]
        floats += [o.dtype for o in outputs if _dt.is_float(o.dtype)]
        self.dtype = "float64" if "float64" in floats else "float32"
        parts = [_flat(g, self.dtype) for g in grads]
        parts += [_flat(new, self.dtype) for _, new in layer_updates]
        self.sizes = [int(np.prod(p.get_value(borrow=True).shape)) for p in params]
        self.sizes += [int(np.prod(sv.get_value(borrow=True).shape)) for sv, _ in layer_updates]
        self.n_values = sum(self.sizes)
        self.n_outputs = len(outputs)
        parts.append(stack([cast(o, self.dtype) if o.dtype != self.dtype else o
                            for o in outputs]))
        parts.append(zeros((2,), dtype=self.dtype))  # the example count, the error flag
        self.flat = concatenate(parts)
        self.flat.name = "allreduce_buffer"
        self.length = self.n_values + self.n_outputs + 2
        # What the update function reads: the summed buffer and 1 / N.
        self.summed = tensor("allreduce_summed", dtype=self.dtype, shape=(self.length,))
        self.inv_count = tensor("allreduce_inv_count", dtype=self.dtype, shape=())
        self.update_reads_inputs = False
        self.broken = None

    def global_gradients(self):
        """The update function's view of the averaged gradients, one per parameter."""
        return self._pieces(self.params, 0)

    def averaged_layer_updates(self):
        """``(shared, expr)``: each running statistic set to the ranks' weighted mean, each
        counter advanced as one process would."""
        stats = [sv for sv, _ in self.layer_updates]
        return list(zip(stats, self._pieces(stats, len(self.params)))) + self.counters

    def _pieces(self, variables, first):
        out, pos = [], sum(self.sizes[:first])
        for i, sv in enumerate(variables):
            size = self.sizes[first + i]
            piece = (self.summed[pos:pos + size] * self.inv_count).reshape(
                sv.get_value(borrow=True).shape)
            if not _dt.is_float(sv.dtype):
                piece = round_(piece)  # a weighted mean of equal integers, up to rounding
            out.append(piece if piece.dtype == sv.dtype else cast(piece, sv.dtype))
            pos += size
        return out

    # ----------------------------------------------------------------- build time

    def synchronise(self, variables):
        """Check the ranks built the same model (``variables``: parameters and optimizer
        state) and give them rank 0's values."""
        what = "building the data-parallel train step"
        check_same_model(self.comm, variables, what)
        bcast_values(self.comm, variables, what)

    def decorrelate(self, random_states):
        decorrelate_streams(self.comm, random_states)

    # ----------------------------------------------------------------- a call

    def run(self, step, args, kwargs):
        """One step: local gradients, the allreduce, the update. Returns the outputs' global
        means as floats, in the order of ``step``'s plan."""
        if self.broken:
            raise DistributedError(f"this train step cannot run again: {self.broken}")
        error = None
        try:
            n = _examples(step.inputs, args, kwargs)
            buf = step.function(*args, **kwargs)[0]
            if n == 0:
                buf[:] = 0  # a mean over no examples is nan; it weighs nothing
            else:
                buf[:-2] *= n
            buf[-2] = n
        except Exception as e:  # every rank must still join the allreduce (see below)
            error = e
            buf = np.zeros(self.length, dtype=self.dtype)
            buf[-1] = 1
        try:
            allreduce_sum(self.comm, buf, "the train step's allreduce")
        except DistributedError as e:
            self.broken = str(e)
            raise
        if buf[-1] > 0:
            self._raise_failures(error)
        total = float(buf[-2])
        if total == 0:
            raise ValueError("the global batch is empty: every rank called the train step with "
                             "0 examples, so there is no gradient; nothing was changed")
        inv = np.asarray(1.0 / total, dtype=self.dtype)
        if self.update_reads_inputs:
            step.update_function(buf, inv, *args, **kwargs)
        else:
            step.update_function(buf, inv)
        return buf[self.n_values:self.n_values + self.n_outputs] / total

    def _raise_failures(self, error):
        text = "" if error is None else f"{type(error).__name__}: {error}"
        texts = allgather_objects(self.comm, text.encode("utf-8")[:_MESSAGE].decode(
            "utf-8", "ignore"), "gathering the errors of a failed train step")
        if error is not None:
            raise error
        failed = "; ".join(f"rank {r} raised {t}" for r, t in enumerate(texts) if t)
        raise DistributedError(f"the train step failed on another rank, so no rank changed "
                               f"its parameters: {failed}")


def _examples(inputs, args, kwargs):
    """The shard's example count: axis 0 of the first input with an axis (1 if none)."""
    for i, var in enumerate(inputs):
        if var.ndim == 0:
            continue
        if i < len(args):
            value = args[i]
        elif var.name in kwargs:
            value = kwargs[var.name]
        else:
            raise TypeError(f"the train step was not given its input {var.name or var!r}, whose "
                            f"axis 0 counts the shard's examples")
        shape = np.shape(value)
        return int(shape[0]) if shape else 1
    return 1


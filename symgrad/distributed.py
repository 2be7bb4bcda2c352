"""Data-parallel training over MPI: ``sg.train_step(..., comm=comm)`` (SPEC section 13).

Every rank holds the whole model and calls the step with its own shard of the
global batch. A step built with ``comm`` is two compiled functions and one
collective between them:

1. the *gradient function* runs forward and backward on the shard and writes
   one flat vector, each value already multiplied by the shard's example count
   ``n`` (the backward is seeded with ``n``: :func:`example_count`): every
   gradient, the new value of every running statistic (batch norm; with more
   than one rank they are every rank's, sent unscaled by the first rank with
   examples), then every loss and summary, then two free slots. The vector has
   a static length, so the kernel allocates it first and the backward's
   products write each gradient straight into its block (no copy:
   ``codegen.render_c._place_concatenations``);
2. Python fills the two slots with ``n`` and an error flag; one ``allreduce``
   (sum) over the vector (split into buckets when it is large) gives every
   rank the sums ``sum_r n_r * g_r``, ``N = sum_r n_r`` and the number of
   ranks that failed (on one rank nothing is multiplied and ``N`` is taken as
   1). Ranks on one machine make no allreduce: each one's gradient function
   writes its vector straight into its slot of a shared-memory window, and
   after a barrier the update function reads every rank's and adds them up in
   its own loops (:class:`NodeSum`);
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
every rank) and rank 0's values are broadcast, the states of the random
streams too.

One process and N ranks given the same seed and global batch reach the same
parameters up to the order of the sums (SPEC section 13). Two parts of the
gradient function's graph are rewritten for it (:func:`global_batch_graph`):

- *Random draws per example.* A draw is per example when the leading length
  of its size is provably the shard's example count -- the length of axis 0
  of the step's example input (the first with an axis), followed through the
  graph by symgrad's shape analysis (``rewrite/shapes.py``: ``h.shape[0]`` of
  any ``h`` computed row by row from that input, as ``sg.nn.dropout(h, p)``
  draws). Its elements take the counters one process gives the same rows of
  the global batch: the shard of rank r, rows ``o_r .. o_r + n_r - 1`` of the
  global batch (``o_r`` the examples of ranks before r, one exclusive scan
  per step), draws elements ``o_r * k ..`` of the sample (``k`` elements per
  row). Every other draw -- a static size, a length not proven to be the
  example count, a draw inside ``sg.scan``'s step -- is the same draw on every
  rank (the streams have rank 0's key everywhere), which is one process's
  draw when it does not depend on the batch (weight noise) and not otherwise.
  A stream's counter moves by the draws a call makes, not by their sizes, so
  every rank's streams advance as one process's.
- *Batch norm.* A training-mode batch norm becomes ``batch_norm{synchronised}``
  (ops/norm.py, include/sg_norm.c): its sums over the shard go through an
  allreduce inside the kernel (a hook of the support library, called back into
  this module), so the mean, the variance, the normalisation and the running
  statistics are the global batch's, computed in double. Two collectives in
  the forward (the sums, then the squared deviations from the global mean) and
  one in the gradient (the sums of ``g`` and ``g * (x - mean)``: the step seeds
  the backward with the shard's number of examples, so ``g`` is the same multiple
  of the global loss's gradient on every rank). A rank with no examples adds zeros.
  Every call makes the same collectives in the same order on every rank; a
  rank that fails part-way plays the rest out with its error flag set, so the
  others fail the step too instead of waiting.
"""

import atexit
import ctypes
import os
import pickle
import sys
import time

import numpy as np

from . import dtypes as _dt
from .errors import DistributedError
from .graph import Constant, SharedVariable, free_inputs, tensor, toposort, trace_as
from .ops import cast, concatenate, stack, zeros
from .ops.norm import ACTIVE as _ACTIVE  # .sync: the _Sync of the step this thread runs
from .ops.norm import sync_allreduce
from .ops import round as round_

__all__ = ["check_comm", "timeout", "DataParallel"]

_INSTALL = ('pip install "symgrad[mpi]" (it installs mpi4py and the MPICH library from the '
            'package index), then launch with: mpiexec -n 4 python train.py')
_BUCKET = 1 << 24       # elements per allreduce call: 64 MiB of float32
_SPIN = 2e-3            # poll without pause this long first (s): a step's allreduce is short
_YIELD = 0.1            # then poll yielding the core (to a process ready to run) until this (s)
_NODE_RANKS = 4         # NodeSum for at most this many ranks (see NodeSum.of)
_MESSAGE = 1024         # bytes of a failed rank's error message that the others get
_HEADER = 64            # bytes before each NodeSum slot (the runtime's header of an output block)
_BROKEN = []            # communicators left with a pending collective (see _abort_at_exit)
_PLACE = []             # the runtime's place_output, once imported (see _place_output)
_yield_core = getattr(os, "sched_yield", lambda: time.sleep(0))


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
    """Wait for ``request`` (``what`` names it in the error) until the deadline.

    A collective through shared memory moves only while every rank polls it: a rank that
    slept between its polls held the allreduce up by its naps after the other rank came
    (bench_distributed's 2.6 MB buffer, rank 1 arriving 3 or 8 ms after rank 0, loaded
    machine, best of 40: 5.6 and 5.4 ms from its arrival to the end with naps, 1.4 and 1.5
    polling; 1.0 both when they come together). So the wait polls, yielding the core after
    ``_SPIN`` (to another rank when there are more ranks than cores), and sleeps only after
    ``_YIELD``, when something else holds the others up (I/O, a failure): a long wait does
    not keep a core busy.
    """
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
        if waited > _YIELD:
            time.sleep(nap)
            nap = min(2 * nap, 5e-4)  # a late wake-up delays the step by as much
        elif waited > _SPIN:
            _yield_core()


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


def shared_memory():
    """Whether steps over ranks of one machine sum through shared memory
    (``SYMGRAD_MPI_SHARED_MEMORY``, default 1; 0: MPI's allreduce, as between machines)."""
    text = os.environ.get("SYMGRAD_MPI_SHARED_MEMORY", "1").strip()
    if text not in ("0", "1"):
        raise ValueError(f"SYMGRAD_MPI_SHARED_MEMORY must be 0 or 1, got {text!r}")
    return text == "1"


def _shm_room():
    """Free bytes in /dev/shm (no limit known where there is none)."""
    try:
        st = os.statvfs("/dev/shm")
    except (OSError, AttributeError):
        return 1 << 62
    return st.f_bavail * st.f_frsize


class NodeSum:
    """The buffers of a step's ranks, when they share one machine, side by side in an MPI
    shared-memory window: each rank's kernel writes its buffer into its slot (:meth:`place`;
    a buffer made elsewhere is copied there), and after one barrier
    every rank's update function reads every rank's slot and sums them in its own loops
    (:meth:`DataParallel._pieces`), in rank order -- the same sums, to the bit, on every
    rank. No allreduce: MPICH's copies the buffer into and out of its own shared segments
    and sums all of it on every rank, as a pass of its own (bench_distributed's 2.6 MB
    buffer on 2 ranks, loaded machine, CPU per call, best of 30 interleaved: MPI's
    allreduce 0.80-0.88 ms; the copy into a window, a barrier, each rank summing half and
    a second barrier 0.39 ms; the copy and the barrier alone, 0.11 ms).

    The slots alternate between two sets: a rank that goes on to the next step writes the
    other set, and cannot come back to this one before every rank has passed the next
    step's barrier, so after its update. The barrier is the window's too: each rank counts
    its deposits in a line of its own in front of its slots, and waits until every rank's
    count has reached its own (:class:`_Arrivals`, polled against the deadline by
    :func:`wait`, as every collective here). MPI's non-blocking barrier took 0.03 ms to
    start and ended 0.07-0.08 ms after the last rank had come (bench_distributed's step).

    One window per communicator, shared by its steps (every rank builds and calls the same
    steps in the same order) and replaced by a larger one when a step needs more; it lives
    as long as the process (freeing a window is collective: not something to do when one
    rank's step is collected).
    """

    _BY_COMM = {}

    @classmethod
    def of(cls, comm, nbytes, what):
        """The communicator's NodeSum with room for buffers of ``nbytes`` (every rank's
        largest), or None when the communicator has one rank or more than ``_NODE_RANKS``,
        its ranks are not all on one machine, the window would not fit in /dev/shm's free
        space (where MPICH keeps it: a write past a full tmpfs is a SIGBUS, not an error),
        or shared memory is turned off (``SYMGRAD_MPI_SHARED_MEMORY``). Collective: every
        rank decides the same.

        Each rank's update reads all p buffers, p x S bytes for a buffer of S, where MPI's
        allreduce moves about 3 S through each rank (copies in and out of its segments, the
        sums) and the update then reads the result once more: up to 4 ranks the window
        moves no more, past them MPI's allreduce is the one that scales."""
        MPI = mpi()
        if not 2 <= comm.Get_size() <= _NODE_RANKS or not shared_memory():
            return None
        key = comm.py2f()
        known = cls._BY_COMM.get(key)
        if known is None or known[0] != comm:  # (a freed communicator's handle reused)
            # Every rank is here (the barrier's deadline says so) before the blocking call.
            wait(comm, comm.Ibarrier(), what)
            node = comm.Split_type(MPI.COMM_TYPE_SHARED)
            apart = node.Get_size() != comm.Get_size()
            node.Free()
            known = cls._BY_COMM[key] = (comm, None if apart else cls(comm))
        made = known[1]
        if made is None:
            return None
        # the ranks' largest need, and whether a window for it fits, decided together
        need = np.array([nbytes], dtype=np.int64)
        wait(comm, comm.Iallreduce(MPI.IN_PLACE, need, op=MPI.MAX), what)
        capacity = int(need[0])
        if capacity <= made.capacity:
            return made
        capacity = max(capacity, 2 * made.capacity)
        # two slots a rank; the old window goes; half of /dev/shm's room left to the others
        new, old = (cls._part(c) * made.size for c in (capacity, made.capacity))
        fits = np.array([_shm_room() + old >= 2 * new], dtype=np.int64)
        wait(comm, comm.Iallreduce(MPI.IN_PLACE, fits, op=MPI.MIN), what)
        if not fits[0]:
            return None
        made.allocate(capacity, what)
        return made

    def __init__(self, comm):
        self.comm, self.capacity, self.win, self.placed = comm, 0, None, 0
        self.copies = 0  # deposits whose buffer was made elsewhere and copied into the slot
        self.rank, self.size, self.calls = comm.Get_rank(), comm.Get_size(), 0

    @staticmethod
    def _stride(capacity):
        """Bytes from one slot to the next: a 64-byte header (the runtime's, for a slot a
        kernel writes its output into: :meth:`place`), the slot, rounded up to 64 bytes."""
        return _HEADER + -(-capacity // 64) * 64

    @classmethod
    def _part(cls, capacity):
        """Bytes of a rank's part of the window: its count of deposits (a 64-byte line),
        then two slots."""
        return 64 + 2 * cls._stride(capacity)

    def allocate(self, capacity, what):
        """A window of two slots of ``capacity`` bytes per rank, in place of the one before
        (collective; the steps hold this object, not the window)."""
        MPI = mpi()
        if self.win is not None:
            self.win.Unlock_all()
            self.win.Free()
            self.win = None
        stride = self._stride(capacity)
        self.win = MPI.Win.Allocate_shared(self._part(capacity), 1, comm=self.comm)
        self.win.Lock_all(MPI.MODE_NOCHECK)
        parts = [np.frombuffer(self.win.Shared_query(r)[0], dtype=np.uint8)
                 for r in range(self.size)]
        self.counts = [part[:8].view(np.int64) for part in parts]
        self.slots = [[part[64 + k * stride + _HEADER:64 + k * stride + _HEADER + capacity]
                       for k in range(2)] for part in parts]
        self.capacity, self.calls, self.views = capacity, 0, {}
        self.addresses = [slot.ctypes.data for slot in self.slots[self.rank]]
        self.placed = 0  # the slot's address the next kernel output was placed at, or 0
        self.counts[self.rank][0] = 0
        self.win.Sync()
        wait(self.comm, self.comm.Ibarrier(), what)  # every count 0 before any deposit

    def place(self, nbytes):
        """Have the next kernel output of ``nbytes`` this thread makes written straight into
        this rank's slot of the next :meth:`deposit` (the runtime's ``place_output``), so the
        deposit copies nothing: in bench_distributed's step at 1024 the copy of its 2.6 MB
        took 0.37 ms of CPU a step (buffer and slot no longer in the core's cache), and
        the gradient function writing into the window instead took no longer, within
        +-0.2 ms (paired blocks, both ranks). :meth:`unplace` after the call, whatever
        happened."""
        address = self.addresses[self.calls & 1]
        if nbytes <= self.capacity and address % 64 == 0:
            _place_output(address, nbytes)
            self.placed = address

    def unplace(self):
        if self.placed:
            _place_output(0, 0)
            self.placed = 0

    def deposit(self, buf, what):
        """Every rank's ``buf`` (1-d, contiguous), in rank order, once every rank has given
        its own: read-only views, valid until this communicator's next-but-one deposit.
        A ``buf`` a kernel wrote into this rank's slot already (:meth:`place`) is not
        copied."""
        k = self.calls & 1
        self.calls += 1
        key = (k, buf.nbytes, buf.dtype)
        views = self.views.get(key)
        if views is None:
            views = [slot[k][:buf.nbytes].view(buf.dtype) for slot in self.slots]
            mine = views[self.rank]
            views = [v[:] for v in views]  # the update function's: read-only
            for v in views:
                v.flags.writeable = False
            views = self.views[key] = (mine, views)
        if buf.ctypes.data != self.addresses[k]:
            np.copyto(views[0], buf)
            self.copies += 1
        self.win.Sync()  # this rank's writes visible to the others before its count ...
        self.counts[self.rank][0] = self.calls
        wait(self.comm, _Arrivals(self), what)
        self.win.Sync()  # ... and theirs to this rank after their counts
        return views[1]


class _Arrivals:
    """The barrier of a :class:`NodeSum` deposit, as :func:`wait` polls a request: done once
    every rank's count of deposits has reached this rank's."""

    def __init__(self, node):
        self.win, self.counts, self.calls = node.win, node.counts, node.calls

    def Test(self):  # noqa: N802 -- the name wait() calls, as on an MPI request
        self.win.Sync()
        return all(count[0] >= self.calls for count in self.counts)


def _place_output(address, nbytes):
    """The runtime's ``place_output`` (imported once: a step calls this twice)."""
    if not _PLACE:
        from ._runtime import place_output
        _PLACE.append(place_output)
    _PLACE[0](address, nbytes)


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


def exscan_count(comm, n, what):
    """The sum of ``n`` over the ranks before this one (0 on rank 0)."""
    MPI = mpi()
    send, got = np.array([n], dtype=np.int64), np.zeros(1, dtype=np.int64)
    wait(comm, comm.Iexscan(send, got, op=MPI.SUM), what)
    return 0 if comm.Get_rank() == 0 else int(got[0])


# --------------------------------------------------------------------------- the global batch

def _int64(v):
    return v if v.dtype == "int64" else cast(v, "int64")


def global_batch_graph(outputs, example, start, synchronise=True):
    """``(outputs, per_example, synchronised)``: ``outputs`` rebuilt so that a shard computes
    what one process computes for the same rows of the global batch (see the module
    docstring): each random draw per example of ``example``'s axis 0 reads its elements from
    the flat position ``start * k`` on (``start``: the 0-d int64 row of the global batch
    where the shard begins), each training-mode batch norm and its gradient synchronised.
    ``per_example``: the draws so rebuilt; ``synchronised``: the batch norms (none without
    ``synchronise``: on one rank, the ordinary batch norm is the global batch's)."""
    from .ops.norm import BatchNorm, BatchNormGrad
    from .ops.random import Draw, RandomIndex
    from .rewrite.shapes import Dim, Dims
    dims = Dims()
    rows = dims.of(example)[0] if example is not None else None
    memo, per_example, synchronised = {}, 0, 0
    for node in toposort(outputs):
        op = node.op
        inputs = [memo.get(id(i), i) for i in node.inputs]
        if isinstance(op, (BatchNorm, BatchNormGrad)) and not op.sync and synchronise:
            op = type(op)(op.eps, sync=True)
            synchronised += isinstance(op, BatchNorm)
        elif (isinstance(op, Draw) and isinstance(rows, Dim) and node.inputs[2].owner is not None
              and isinstance(node.inputs[2].owner.op, RandomIndex)
              and not node.inputs[2].owner.op.start and node.inputs[2].owner.inputs):
            if dims.same((dims.scalar(node.inputs[2].owner.inputs[0]),), (rows,)):
                # the lengths as rebuilt (a batch norm's output's length reads the new node)
                sizes = [memo.get(id(n), n) for n in node.inputs[2].owner.inputs]
                k = None
                for n in sizes[1:]:
                    n = _int64(n)
                    k = n if k is None else k * n
                first = start if k is None else start * k
                with trace_as(node.inputs[2].owner.trace, None):
                    index = RandomIndex(len(sizes), start=True)(*sizes, first)
                inputs[2] = index
                per_example += 1
        if op is node.op and all(a is b for a, b in zip(inputs, node.inputs)):
            continue
        with trace_as(node.trace, node.grad_of):
            new = op.make_node(*inputs)
        for old, out in zip(node.outputs, new.outputs):
            out.name = old.name
            out.tag.__dict__.update(old.tag.__dict__)
            memo[id(old)] = out
    return [memo.get(id(o), o) for o in outputs], per_example, synchronised


def _inner_batch_norms(nodes):
    """Whether a loop's or branch's inner graph among ``nodes`` holds a training batch norm."""
    from .ops.norm import BatchNorm
    todo = [n for n in nodes if getattr(n.op, "inner_graphs", None) is not None]
    while todo:
        node = todo.pop()
        for _, (_, outs) in node.op.inner_graphs():
            for inner in toposort(outs):
                if isinstance(inner.op, BatchNorm):
                    return inner
                if getattr(inner.op, "inner_graphs", None) is not None:
                    todo.append(inner)
    return None


# --------------------------------------------------------------------------- in-kernel sums

_HOOK = []  # the ctypes callback installed in the support library


_HOOK_TYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_double), ctypes.c_int64,
                              ctypes.c_void_p, ctypes.c_int64)


def _hook(buf, n, msg, cap):
    try:
        view = np.ctypeslib.as_array(buf, shape=(n,)) if n > 0 else np.zeros(0)
        sync_allreduce(view)
        return 0
    except BaseException as e:  # noqa: B036 -- nothing may leave a ctypes callback
        text = str(e).encode("utf-8", "replace")[:max(int(cap) - 1, 0)] + b"\0"
        ctypes.memmove(msg, text, len(text))
        return 1


def _install_hook():
    """Point the support library's allreduce hook (sg_norm.c) at :func:`sync_allreduce`."""
    if _HOOK:
        return
    from .compiler import SUPPORT_LIB
    callback = _HOOK_TYPE(_hook)
    ctypes.CDLL(SUPPORT_LIB).sg_norm_set_allreduce(callback)
    _HOOK.append(callback)  # kept alive: the library holds its address


class _Sync:
    """The collectives a step makes inside its gradient function (synchronised batch norms).

    Every one has the same length (``length``: the longest one's, plus a slot counting the
    ranks that failed) and a step makes ``expected`` of them, whatever its data, so a rank
    that fails part-way can play the rest out (:meth:`play_out`) and the others see its flag
    in their next one.
    """

    def __init__(self, comm, length, expected):
        self.comm, self.length, self.expected = comm, length, expected
        self.begin()

    def begin(self):
        self.done, self.peer_failed, self.fatal = 0, False, None

    def _collective(self, full):
        try:
            allreduce_sum(self.comm, full, "a synchronised batch norm's allreduce")
        except DistributedError as e:
            self.fatal = e
            raise
        self.done += 1

    def allreduce(self, buf):
        k = buf.size
        if self.done >= self.expected or k > self.length:
            raise DistributedError(f"the train step made more collectives than the "
                                   f"{self.expected} it was built for ({k} values, at most "
                                   f"{self.length})")
        full = np.zeros(self.length + 1)
        full[:k] = buf
        self._collective(full)
        if full[-1] > 0:
            self.peer_failed = True
            raise DistributedError("the train step failed on another rank")
        buf[:] = full[:k]

    def play_out(self):
        """The collectives this step has not made yet, with this rank's failure flag set."""
        while self.done < self.expected:
            full = np.zeros(self.length + 1)
            full[-1] = 1
            self._collective(full)


# --------------------------------------------------------------------------- the step

def _flat(v, dtype, size):
    """``v`` as a vector of ``dtype`` of its static ``size``: the buffer then has a static
    length, and the kernel writes each part straight into its block of the buffer (the
    products of the backward included: codegen.render_c's _place_concatenations)."""
    v = v if v.dtype == dtype else cast(v, dtype)
    return v.reshape((size,))


class DataParallel:
    """The two compiled functions and the allreduce of one data-parallel train step.

    Built by :class:`symgrad.train.TrainStep` when it is given ``comm``; the step's
    ``function`` is :attr:`gradient_function`, ``update_function`` the second.
    """

    def __init__(self, comm, params, grads, layer_updates, outputs, count=1):
        # grads: of the shard's total times ``count`` (its number of examples, a 0-d of the
        # loss's dtype: :func:`example_count`), so the buffer leaves the kernel weighted
        self.comm = comm
        self.params = params
        # Counters (batch norm's num_batches_tracked) follow from shared values alone, the
        # same on every rank: the update function computes them. Whatever reads the shard
        # goes through the buffer, as the ranks' weighted mean.
        self.counters = [(sv, e) for sv, e in layer_updates
                         if not _dt.is_float(sv.dtype) and not free_inputs([e])]
        self.layer_updates = [(sv, e) for sv, e in layer_updates
                              if (sv, e) not in self.counters]
        floats = [p.dtype for p in params] + [sv.dtype for sv, _ in self.layer_updates]
        floats += [o.dtype for o in outputs if _dt.is_float(o.dtype)]
        self.dtype = "float64" if "float64" in floats else "float32"
        # (the counters stay out of the buffer: with two batch norms, their slots had shifted
        # the second one's statistics)
        self.sizes = [int(np.prod(p.get_value(borrow=True).shape)) for p in params]
        self.sizes += [int(np.prod(sv.get_value(borrow=True).shape))
                       for sv, _ in self.layer_updates]
        parts = [_flat(g, self.dtype, n) for g, n in zip(grads, self.sizes)]
        # (the running statistics of synchronised batch norms are every rank's, unweighted)
        parts += [_flat(new if self.exact_stats else new * count, self.dtype, n)
                  for (_, new), n in zip(self.layer_updates, self.sizes[len(params):])]
        self.n_values = sum(self.sizes)
        self.n_outputs = len(outputs)
        parts.append(stack([(cast(o, self.dtype) if o.dtype != self.dtype else o) * count
                            for o in outputs]))
        parts.append(zeros((2,), dtype=self.dtype))  # the example count, the error flag
        self.flat = concatenate(parts)
        self.flat.name = "allreduce_buffer"
        self.length = self.n_values + self.n_outputs + 2
        # What the update function reads: the summed buffer -- or, ranks on one machine,
        # every rank's buffer, summed in the update's own loops (NodeSum) -- and 1 / N.
        self.node_sum = NodeSum.of(comm, self.length * np.dtype(self.dtype).itemsize,
                                   "building the data-parallel train step")
        self.parts = [tensor("allreduce_summed", dtype=self.dtype, shape=(self.length,))] \
            if self.node_sum is None else \
            [tensor(f"rank{r}_buffer", dtype=self.dtype, shape=(self.length,))
             for r in range(comm.Get_size())]
        self.inv_count = tensor("allreduce_inv_count", dtype=self.dtype, shape=())
        self.update_reads_inputs = False
        self.broken = None
        self.per_example, self.n_batch_norms, self.sync = 0, 0, None

    def global_gradients(self):
        """The update function's view of the averaged gradients, one per parameter."""
        return self._pieces(self.params, 0)

    def averaged_layer_updates(self):
        """``(shared, expr)``: each running statistic set to the ranks' weighted mean -- or,
        with batch norms synchronised (more than one rank: :attr:`exact_stats`), to the value
        every rank computed, sent by the first rank with examples alone -- and each counter
        advanced as one process would."""
        stats = [sv for sv, _ in self.layer_updates]
        return list(zip(stats, self._pieces(stats, len(self.params), self.exact_stats))) \
            + self.counters

    @property
    def exact_stats(self):
        """Whether the running statistics are the global batch's on every rank (batch norms
        synchronised): then the buffer carries one rank's, unscaled, and nothing rounds them
        (a weighted mean of equal float32 values is not always that value)."""
        return self.comm.Get_size() > 1 and bool(self.layer_updates)

    def _pieces(self, variables, first, exact=False):
        out, pos = [], sum(self.sizes[:first])
        for i, sv in enumerate(variables):
            size = self.sizes[first + i]
            # reshaped before the sum and the division: they (elementwise ops of the
            # variable's rank) fuse into the optimizer's loop over the variable (one pass)
            shape = sv.get_value(borrow=True).shape
            piece = self.parts[0][pos:pos + size].reshape(shape)
            for part in self.parts[1:]:  # in rank order: the same bits on every rank
                piece = piece + part[pos:pos + size].reshape(shape)
            piece = piece if exact else piece * self.inv_count
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

    def share_streams(self, random_states):
        """Rank 0's states of the random streams on every rank (see the module docstring)."""
        what = "building the data-parallel train step"
        check_same_model(self.comm, random_states, what)
        bcast_values(self.comm, random_states, what)

    def global_batch(self, inputs):
        """Rewrite the buffer's graph for the global batch (:func:`global_batch_graph`): the
        example input is ``inputs``' first with an axis. Returns the extra input the gradient
        function takes (the shard's first row in the global batch), or None."""
        example = next((v for v in inputs if v.ndim > 0), None)
        self.start = tensor("global_batch_start", dtype="int64", shape=())
        (self.flat,), self.per_example, self.n_batch_norms = global_batch_graph(
            [self.flat], example, self.start, synchronise=self.comm.Get_size() > 1)
        self.flat.name = "allreduce_buffer"
        inner = _inner_batch_norms(toposort([self.flat]))
        if inner is not None:
            raise NotImplementedError(
                f"{inner.op} at {inner.trace}: a training-mode batch norm inside sg.scan or "
                f"sg.ifelse cannot be synchronised across the ranks of sg.train_step(..., "
                f"comm=) yet; normalise outside the loop")
        return self.start if self.per_example else None

    def count_collectives(self, function):
        """Set up the in-kernel collectives of the compiled gradient ``function``."""
        from .ops.norm import BatchNorm, BatchNormGrad
        calls, longest = 0, 1
        for node in function.graph.nodes:
            if isinstance(node.op, (BatchNorm, BatchNormGrad)) and node.op.sync:
                calls += 2 if isinstance(node.op, BatchNorm) else 1
                x, w = node.inputs[0 if isinstance(node.op, BatchNorm) else 1], \
                    node.inputs[1 if isinstance(node.op, BatchNorm) else 2]
                c = _channels(x, w)
                if c is None:
                    raise ValueError(f"{node.op} at {node.trace}: synchronised across ranks, a "
                                     f"batch norm needs its number of channels known when the "
                                     f"step is built (a static axis 1 or a shared weight)")
                longest = max(longest, 2 * c + 1)
        calls *= 2 if function.mode == "debug" else 1  # the kernel, then the reference
        self.sync = _Sync(self.comm, longest, calls) if calls else None
        if calls:
            _install_hook()

    # ----------------------------------------------------------------- a call

    def run(self, step, args, kwargs):
        """One step: local gradients, the allreduce, the update. Returns the outputs' global
        means as floats, in the order of ``step``'s plan."""
        if self.broken:
            raise DistributedError(f"this train step cannot run again: {self.broken}")
        if self.sync is not None:
            self.sync.begin()  # before anything can fail: play_out counts from here
        error, n = None, 0
        try:
            n = _examples(step.inputs, args, kwargs)
        except Exception as e:  # every rank must still join the collectives (see below)
            error = e
        start = 0
        try:
            if self.per_example or self.exact_stats:  # every rank, whatever its input
                start = exscan_count(self.comm, n, "the train step's count of examples")
        except DistributedError as e:
            self.broken = str(e)
            raise
        if error is None:
            try:
                # the first rank with examples sends the running statistics
                given = dict(kwargs, global_batch_start=start) if self.per_example else kwargs
                buf = self._gradients(step, n, start == 0 and n > 0, args, given)
            except Exception as e:
                error = e
        if error is not None:
            try:
                if self.sync is not None:
                    fatal = self.sync.fatal
                    if fatal is not None:
                        raise fatal
                    self.sync.play_out()
                    if self.sync.peer_failed:
                        error = None  # this rank failed because another one did
            except DistributedError as e:
                self.broken = str(e)
                raise
            buf = np.zeros(self.length, dtype=self.dtype)
            buf[-1] = error is not None
        try:
            parts, tail = self._sum(buf)
        except DistributedError as e:
            self.broken = str(e)
            raise
        if tail[-1] > 0:
            self._raise_failures(error)
        total = float(tail[-2])
        if total == 0:
            raise ValueError("the global batch is empty: every rank called the train step with "
                             "0 examples, so there is no gradient; nothing was changed")
        if self.comm.Get_size() == 1:
            total = 1.0  # one rank: the buffer holds the shard's means unweighted (count 1)
        inv = np.asarray(1.0 / total, dtype=self.dtype)
        if self.update_reads_inputs:
            step.update_function(*parts, inv, *args, **kwargs)
        else:
            step.update_function(*parts, inv)
        return tail[:self.n_outputs] / total

    def _sum(self, buf):
        """``(parts, tail)``: what the update function reads (the buffer summed over the
        ranks; ranks on one machine: every rank's buffer, NodeSum) and the sums of the
        buffer's last values (the outputs, the example count, the error flag)."""
        what = "the train step's allreduce"
        if self.node_sum is None:
            allreduce_sum(self.comm, buf, what)
            return [buf], buf[self.n_values:]
        parts = self.node_sum.deposit(buf, what)
        tail = parts[0][self.n_values:].copy()
        for part in parts[1:]:  # in rank order, as the update function's sums
            tail += part[self.n_values:]
        return parts, tail

    def _gradients(self, step, n, first, args, kwargs):
        """The shard's buffer, scaled for the sum over the ranks (its last two slots: the
        example count and no error); ``first``: the first rank with examples."""
        if self.sync is not None:
            _ACTIVE.sync = self.sync
        if self.node_sum is not None:  # the kernel writes the buffer into the window's slot
            self.node_sum.place(self.length * np.dtype(self.dtype).itemsize)
        try:
            buf = step.function(*args, **kwargs)[0]
        finally:
            _ACTIVE.sync = None
            if self.node_sum is not None:
                self.node_sum.unplace()
        # The kernel weighted the values by n (example_count): no pass over the buffer here.
        if n == 0:
            buf[:] = 0  # a mean over no examples is nan; it weighs nothing
        elif self.exact_stats and not first:
            buf[sum(self.sizes[:len(self.params)]):self.n_values] = 0
        buf[-2] = n
        return buf

    def _raise_failures(self, error):
        text = "" if error is None else f"{type(error).__name__}: {error}"
        texts = allgather_objects(self.comm, text.encode("utf-8")[:_MESSAGE].decode(
            "utf-8", "ignore"), "gathering the errors of a failed train step")
        if error is not None:
            raise error
        failed = "; ".join(f"rank {r} raised {t}" for r, t in enumerate(texts) if t)
        raise DistributedError(f"the train step failed on another rank, so no rank changed "
                               f"its parameters: {failed}")


def example_count(inputs, dtype):
    """The shard's number of examples as a 0-d of ``dtype`` in the graph: axis 0 of the first
    of ``inputs`` with an axis (:func:`_examples`), or 1. (On a communicator of one rank the
    step weights nothing: its count is 1 and the step is the ordinary one's arithmetic.)"""
    from .ops.shape import shape_at
    example = next((v for v in inputs if v.ndim > 0), None)
    if example is None:
        return 1
    n = example.type.shape[0]
    return cast(shape_at(example, 0), dtype) if n is None else float(n)


def _channels(x, w):
    """A batch norm's number of channels where it is known when the step is built."""
    for n in (x.type.shape[1] if x.ndim > 1 else None, w.type.shape[0] if w.ndim else None):
        if n is not None:
            return int(n)
    if isinstance(w, SharedVariable):
        return int(w.get_value(borrow=True).shape[0])
    if isinstance(w, Constant):
        return int(w.data.shape[0])
    return None


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


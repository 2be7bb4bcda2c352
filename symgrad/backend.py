"""Mode "c": a graph lowered to one C kernel, compiled (or found in the cache) and loaded.

``CKernel`` is what :class:`symgrad.function.Function` calls in mode "c": it
binds the kernel's inputs (the function's inputs, then shared variables, then
constants, as ``graph.graph_leaves`` lists them) and runs the kernel through
the runtime extension, which releases the GIL while it computes.
"""

import os
import time

import numpy as np

from .codegen.kernel import lower
from .config import config
from .graph import Constant, SharedVariable

__all__ = ["CKernel"]


class CKernel:
    """``outputs`` of ``inputs`` as a compiled kernel.

    For inspection it keeps ``steps`` (what ``sg_main`` does, one
    ``codegen.ir`` step per node or fused loop), ``compile_times``
    (seconds by stage: ``codegen``, ``compile``, ``load``) and ``cache_hit``.
    """

    def __init__(self, inputs, outputs, name="kernel", profile=False, updates=(), probe=False):
        from . import _runtime
        from .compiler import compile_library

        self.n_inputs = len(inputs)
        self.steps = []
        #: ``(output index, leaf index)`` of the updates the kernel may write over
        #: their shared variable's memory (``codegen.lower._plan_in_place``).
        self.donations = []
        #: ``"<op> at <file>:<line>: "`` of each failure site, by the number the
        #: kernel's error messages carry instead (``KernelContext.location``).
        self.locations = []
        #: With ``probe``: the result of every step, which the kernel returns after
        #: ``outputs`` (mode "debug" compares them with the reference).
        self.probes = [] if probe else None
        t0 = time.perf_counter()
        self.source, self.leaves, self.timed = lower(
            inputs, outputs, header=f"symgrad kernel: {name}", profile=profile,
            steps=self.steps, updates=updates, donations=self.donations,
            locations=self.locations, probes=self.probes)
        returned = list(outputs) + (self.probes or [])
        signature = (len(self.leaves), [np.dtype(v.dtype) for v in returned],
                     [v.ndim for v in returned])
        self.signature = signature
        t1 = time.perf_counter()
        info = {}
        self.path = compile_library(self.source, name="kernel", info=info)
        self.cache_hit = info.get("cache_hit")
        t2 = time.perf_counter()
        self.kernel = self._load(signature)
        self.kernel.locations = tuple(self.locations)
        # Loops and matrix products share the threads (SYMGRAD_NUM_THREADS, else
        # every usable core); the products' blocks do not depend on how many.
        self.kernel.set_num_threads(config.threads())
        self.compile_times = {"codegen": t1 - t0, "compile": t2 - t1,
                              "load": time.perf_counter() - t2}
        # graph_leaves orders the kernel's inputs: function inputs, shared variables, constants.
        self._shared_vars = [v for v in self.leaves if isinstance(v, SharedVariable)]
        self._const_data = [v.data for v in self.leaves if isinstance(v, Constant)]

    def _load(self, signature):
        """The library at ``self.path``, loaded; rebuilt if it went away or is unusable."""
        from . import _runtime, cache
        from .compiler import compile_library

        for attempt in range(5):
            try:
                return _runtime.Kernel(self.path, *signature)
            except _runtime.KernelLoadError:
                # Gone between the cache's check and the load (another process ran
                # `python -m symgrad.cache clear`): build it again. Whole but
                # unusable: move it aside and build it once more; a fresh build
                # that fails too is no accident.
                if os.path.exists(self.path):
                    if attempt:
                        raise
                    cache.discard(cache.root(), os.path.dirname(self.path))
                self.path = compile_library(self.source, name="kernel")
        return _runtime.Kernel(self.path, *signature)

    def node_times(self):
        """``[(node, seconds)]`` summed over calls, for a kernel built with ``profile=True``."""
        times = self.kernel.profile_times()
        return list(zip(self.timed, times))

    def bind(self, checks, updated, n_out, convert, update_checks=(), update_error=None):
        """The whole call in the runtime: argument checks, shared values, updates.

        ``checks`` holds ``(dtype, ndim, static shape or None)`` per input;
        ``convert(i, value)`` handles an argument that is not already an
        ndarray of the input's dtype and ndim (see ``_runtime.BoundCall``).
        ``update_checks`` holds ``(j, ((axis, length), ...))``: lengths the
        new value of update ``j`` must have, checked for every update before
        any is stored; ``update_error(j, shape)`` makes the error raised.
        """
        from . import _runtime

        dtypes, ndims, statics = zip(*checks) if checks else ((), (), ())
        return _runtime.BoundCall(self.kernel, dtypes, ndims, statics, convert,
                                  self._shared_vars, self._const_data, updated, n_out,
                                  self.donations, update_checks, update_error)

    def __call__(self, values):
        """Run on ``values`` (the function's inputs); shared variables are read, never given away."""
        if len(self.leaves) != self.n_inputs:
            values = values + [sv.get_value(borrow=True) for sv in self._shared_vars] + \
                self._const_data
        return self.kernel(values)

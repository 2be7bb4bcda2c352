"""The NumPy reference evaluator: mode "py", and the oracle of every test.

A :class:`Program` is a graph flattened once into a list of steps; running it
calls each op's ``perform`` on NumPy arrays in topological order.
"""

import time

import numpy as np

from .errors import ShapeError, SymgradError
from .graph import Constant, SharedVariable, graph_leaves, toposort

__all__ = ["Program", "evaluate"]


class Program:
    """``outputs`` as a list of steps over value slots, inputs bound by position.

    Slots are numbered leaves first, in the order of :func:`~symgrad.graph.graph_leaves`
    (the inputs, then shared variables, then constants, as the compiled kernel
    binds them), then the nodes' outputs in topological order.
    """

    def __init__(self, inputs, outputs):
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.nodes = toposort(self.outputs)
        slot = {}

        def slot_of(v):
            if id(v) not in slot:
                slot[id(v)] = len(slot)
            return slot[id(v)]

        leaves = graph_leaves(self.inputs, self.outputs)
        for v in leaves:  # the first slots, in binding order
            slot_of(v)
        self.input_slots = [slot[id(v)] for v in self.inputs]
        self.shared = [(slot[id(v)], v) for v in leaves if isinstance(v, SharedVariable)]
        self.constants = [(slot[id(v)], v.data) for v in leaves if isinstance(v, Constant)]
        self.steps = [(node, [slot_of(i) for i in node.inputs], [slot_of(o) for o in node.outputs])
                      for node in self.nodes]
        self.output_slots = [slot_of(v) for v in self.outputs]
        self.n_slots = len(slot)

    def run(self, values, profile=None, carry=None):
        """Output values for input ``values`` (a list in the order of ``inputs``).

        ``carry(node, results)``, when given, sees each node's results as they are
        computed and returns the values the later nodes read instead (mode "debug"
        carries the compiled values forward, so each step is checked on its own).
        """
        env = [None] * self.n_slots
        for s, v in zip(self.input_slots, values):
            env[s] = v
        for s, v in self.constants:
            env[s] = v
        for s, v in self.shared:
            env[s] = v.get_value(borrow=True)
        for node, ins, outs in self.steps:
            t0 = time.perf_counter() if profile is not None else 0.0
            try:
                results = node.op.perform(node, *[env[i] for i in ins])
            except ValueError as e:
                raise _too_large(node, e) or e
            except MemoryError as e:  # named as mode "c" names it (a node inside a loop: once)
                if getattr(e, "symgrad_node", None) is not None:
                    raise
                err = MemoryError(f"{node.op} at {node.trace}: out of memory ({e})")
                err.symgrad_node = node
                raise err from e
            if profile is not None:
                entry = profile.setdefault(id(node), [node, 0, 0.0])
                entry[1] += 1
                entry[2] += time.perf_counter() - t0
            for r, var in zip(results, node.outputs):
                _check_result(node, var, r)
            if carry is not None:
                results = carry(node, results)
            for s, r in zip(outs, results):
                env[s] = r
        return [env[s] for s in self.output_slots]


# NumPy's words for a shape whose size overflows its index type.
_NUMPY_TOO_LARGE = ("array is too big", "Maximum allowed size exceeded", "iterator is too large")


def _too_large(node, e):
    """NumPy refusing a result that is too large as the ShapeError mode "c" raises, or None."""
    if isinstance(e, SymgradError) or not any(m in str(e) for m in _NUMPY_TOO_LARGE):
        return None
    err = ShapeError(f"{node.op} at {node.trace}: the result is too large ({e})")
    err.__cause__ = e
    return err


def _check_result(node, var, value):
    """A reference result must match the inferred type: a bug in an op otherwise."""
    if not isinstance(value, np.ndarray) or value.dtype.name != var.dtype:
        raise AssertionError(f"{node.op} returned {type(value).__name__} "
                             f"{getattr(value, 'dtype', '')}, its type says {var.type}")
    if not var.type.accepts_shape(value.shape):
        raise ShapeError(f"{node.op} at {node.trace}: result of shape {value.shape} does not "
                         f"match the static shape {var.type}")


def evaluate(outputs, givens=None):
    """Evaluate ``outputs`` (a Variable or a list) with ``givens`` {input: value}, in NumPy.

    >>> import numpy as np, symgrad as sg
    >>> x = sg.vector("x")
    >>> sg.evaluate(x * 2, {x: np.array([1.0, 2.0])})
    array([2., 4.])
    """
    single = not isinstance(outputs, (list, tuple))
    outs = [outputs] if single else list(outputs)
    givens = givens or {}
    prog = Program(list(givens), outs)
    vals = prog.run([np.asarray(v) for v in givens.values()])
    return vals[0] if single else vals

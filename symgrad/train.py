"""``sg.train_step``: losses in, one compiled call per step out.

A model is code that builds losses; the trainer only sums them. There is no
required "model" and "loss function" split: a model may return one scalar, or
a dict of named scalars (one per task, a regulariser, ...), or be written as
``loss_fn(model(x), y)``; all three are just graph by the time they get here.

Building a step:

1. check the losses and sum them into the total (named ``loss``);
2. infer the parameters (every trainable float shared variable the total
   depends on, in creation order) unless they are given;
3. derive the gradients with :func:`symgrad.grad`, one symbolic graph;
4. ask the optimizer for its updates (parameters and optimizer state), and add
   the running-statistic updates of the training-mode batch norms the total
   depends on (:func:`symgrad.nn.collect_updates`);
5. collect the summaries of the active scope the step can compute;
6. compile all of it into one :func:`symgrad.function`.

Calling the step runs that function once and converts its outputs to Python
floats; nothing else happens per call.

With ``comm=`` (data-parallel training over MPI) step 6 makes two functions
with an allreduce between them: see ``symgrad/distributed.py``.
"""

from . import dtypes as _dt
from .autodiff import grad
from .errors import NonDifferentiableError, NonScalarCostError
from .function import In, function
from .graph import SharedVariable, Variable, free_inputs, shape_text
from .ops.elemwise import StopGradient
from .ops.norm import collect_updates
from .optim import SGD
from .summaries import active_scope

__all__ = ["train_step", "TrainStep"]

TOTAL = "loss"  # the key of the summed loss in every step's result


# --------------------------------------------------------------------------- checks

def _shape_text(v):
    return shape_text(v.type.shape, unknown="?")


def _check_loss(value, key):
    """``value`` if it is a 0-d float Variable; ``key`` names it in errors (None: the loss)."""
    what = "losses" if key is None else f"losses[{key!r}]"
    if not isinstance(value, Variable):
        raise TypeError(f"{what} must be a symbolic Variable, got {type(value).__name__}"
                        + ("; a dict maps names to 0-d Variables" if key is not None else
                           "; pass a 0-d Variable or a dict {name: 0-d Variable}"))
    if value.ndim != 0:
        made = f" made at {value.owner.trace}" if value.owner is not None else ""
        raise NonScalarCostError(
            f"{what} is a {value.ndim}-d {value.dtype} value of shape {_shape_text(value)}{made}, "
            f"but a loss must be 0-d: the step minimises one number. Reduce it first, usually "
            f"with .mean() (or .sum())")
    if not _dt.is_float(value.dtype):
        raise NonDifferentiableError(f"{what} is {value.dtype}; a loss must be float (integer "
                                     f"and bool values have no gradient)")
    return value


def _check_losses(losses):
    """``(named losses dict, total)``."""
    if isinstance(losses, dict):
        if not losses:
            raise ValueError("losses is an empty dict; a step needs at least one loss")
        for key in losses:
            if not isinstance(key, str) or not key:
                raise TypeError(f"losses: keys must be non-empty str, got {key!r}")
        if TOTAL in losses and len(losses) > 1:
            raise ValueError(f"losses: the key {TOTAL!r} is reserved for the total of the other "
                             f"losses; name each loss after what it measures")
        named = {k: _check_loss(v, k) for k, v in losses.items()}
        parts = list(named.values())
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        if len(named) == 1 and TOTAL in named:
            named = {}  # {"loss": x}: the total already reports it
    else:
        named, total = {}, _check_loss(losses, None)
    if total.name is None:
        total.name = TOTAL
    return named, total


def _check_inputs(inputs):
    """The inputs as given (``sg.In`` entries kept: sg.function reads their defaults) and as
    Variables."""
    if isinstance(inputs, (Variable, In)):
        inputs = [inputs]
    if not isinstance(inputs, (list, tuple)):
        raise TypeError(f"inputs must be a Variable, an sg.In or a list/tuple of them, got "
                        f"{type(inputs).__name__}")
    given = list(inputs)
    return given, [v.variable if isinstance(v, In) else v for v in given]


def _check_params(params):
    items = [params] if isinstance(params, Variable) else params
    if not isinstance(items, (list, tuple)):
        raise TypeError(f"params must be a list/tuple of shared variables (or None to infer "
                        f"them), got {type(params).__name__}")
    if not items:
        raise ValueError("params is empty; pass None to train every trainable float shared "
                         "variable the loss depends on")
    seen = set()
    for i, p in enumerate(items):
        if not isinstance(p, SharedVariable):
            got = repr(p) if isinstance(p, Variable) else type(p).__name__
            raise TypeError(f"params[{i}] must be a shared variable (sg.shared), got {got}")
        if not _dt.is_float(p.dtype):
            raise TypeError(f"params[{i}] ({p.name or 'unnamed'}) holds {p.dtype}; only float "
                            f"shared variables can be trained")
        if id(p) in seen:
            raise ValueError(f"params lists {p.name or f'params[{i}]'} twice")
        seen.add(id(p))
    return list(items)


def infer_params(total):
    """Every trainable float shared variable ``total`` depends on, in creation order.

    The walk follows value dependencies only: not into inputs an op reads just
    the shape of, and not through ``sg.stop_gradient`` (what sits behind it is
    held fixed on purpose).
    """
    found, seen, stack = {}, set(), [total]
    while stack:
        v = stack.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        if isinstance(v, SharedVariable) and v.trainable and _dt.is_float(v.dtype):
            found[id(v)] = v
        node = v.owner
        if node is None or isinstance(node.op, StopGradient):
            continue
        vi = node.op.value_inputs
        stack.extend(node.inputs if vi is None else [node.inputs[i] for i in vi])
    return sorted(found.values(), key=lambda v: v.order)


def _check_optimizer(optimizer):
    if optimizer is None:
        return SGD(0.01)
    if isinstance(optimizer, type):
        raise TypeError(f"optimizer must be an instance, got the class {optimizer.__name__}; "
                        f"write {optimizer.__name__}(...)")
    if not callable(getattr(optimizer, "updates", None)):
        raise TypeError(f"optimizer must have a method updates(params, grads) returning "
                        f"(shared, expr) pairs (like sg.optim.SGD), got {type(optimizer).__name__}")
    return optimizer


def _check_pairs(pairs, optimizer):
    if isinstance(pairs, dict):
        pairs = list(pairs.items())
    if not isinstance(pairs, (list, tuple)):
        raise TypeError(f"{type(optimizer).__name__}.updates must return a list of (shared, expr) "
                        f"pairs or a dict, got {type(pairs).__name__}")
    return list(pairs)


def _outputs(total, named, summaries):
    """``(unique output Variables, [(key, index into them)])`` in result order."""
    outs, index, keys = [], {}, []

    def add(key, var):
        if id(var) not in index:
            index[id(var)] = len(outs)
            outs.append(var)
        keys.append((key, index[id(var)]))

    add(TOTAL, total)
    for k, v in named.items():
        add(k, v)
    for k, v in summaries.items():
        if k in named:
            if named[k] is v:
                continue
            raise ValueError(f"summary {k!r} has the name of a loss; rename one of them")
        add(k, v)
    return outs, keys


def _check_layer_updates(layer, updates):
    """``layer``: the pending updates of the layers the total depends on (batch norm's
    running statistics); one that the optimizer updates too is an error naming it."""
    mine = {id(sv) for sv, _ in updates}
    for sv, _ in layer:
        if id(sv) in mine:
            raise ValueError(f"{sv.name or sv!r} is updated by the optimizer and by a training-"
                             f"mode batch norm; running statistics must not be trained "
                             f"(make them with trainable=False)")
    return layer


# --------------------------------------------------------------------------- the step

class TrainStep:
    """One compiled training step; make one with :func:`train_step`.

    Attributes
    ----------
    inputs : list of Variable
        What a call takes, in order (or by name); ``function.defaults`` holds the
        defaults of those given as ``sg.In``.
    total : Variable
        The summed loss, reported as ``"loss"``.
    losses : dict
        The named losses (empty when a single Variable was given).
    params : list of SharedVariable
        What the step trains.
    gradients : dict
        ``param -> Variable``: the symbolic gradient of the total (print it
        with :func:`symgrad.debugprint`).
    optimizer : object
        The optimizer whose updates the step applies.
    updates : list of (SharedVariable, Variable)
        Parameters and optimizer state with their new values, then the running
        statistics of the training-mode batch norms the total depends on.
    state : list of SharedVariable
        Shared variables the step updates that are not parameters (optimizer
        state, running statistics, the states of the random streams it draws from);
        :func:`symgrad.save` stores them with the parameters.
    summaries : dict
        ``name -> Variable``: the summaries the step reports.
    keys : list of str
        The keys of a call's result, in order.
    function : symgrad.Function
        The compiled function; ``graph`` and ``source`` are its own. With
        ``comm`` it computes the shard's gradients, losses and summaries into
        one buffer, and ``update_function`` applies the update from the
        buffer summed over the ranks.
    update_function : symgrad.Function or None
        With ``comm`` only (see :mod:`symgrad.distributed`).
    comm : mpi4py.MPI.Intracomm or None
        The communicator of a data-parallel step.
    """

    def __init__(self, losses, inputs, params=None, optimizer=None, mode=None, name=None,
                 comm=None):
        self.comm = None
        if comm is not None:
            from .distributed import check_comm
            self.comm = check_comm(comm)
        self.losses, self.total = _check_losses(losses)
        self._given, self.inputs = _check_inputs(inputs)
        inferred = params is None
        self.params = infer_params(self.total) if inferred else _check_params(params)
        if not self.params:
            raise ValueError("the loss depends on no trainable float shared variable, so there "
                             "is nothing to train; make the parameters with sg.shared(...) "
                             "(trainable=True is the default) or pass params=[...]")
        self.optimizer = _check_optimizer(optimizer)
        # Inferred parameters the gradient cannot reach (say, used only in a comparison)
        # get zeros; a parameter the user named must be reachable.
        self._disconnected = "ignore" if inferred else "raise"
        grads = grad(self.total, self.params, disconnected=self._disconnected)
        self.gradients = dict(zip(self.params, grads))
        # batch norm's running statistics (layers in training mode): updated by the step too
        layer = collect_updates(self.total)
        if self.comm is None:
            self._build(grads, layer, mode, name)
        else:
            self._build_data_parallel(grads, layer, mode, name)

    def _build(self, grads, layer, mode, name):
        self.updates = _check_pairs(self.optimizer.updates(list(self.params), list(grads)),
                                    self.optimizer)
        self.updates += _check_layer_updates(layer, self.updates)
        self._collect_state()
        outs, self._plan = self._outputs()
        self.function = function(self._given, outs, updates=self.updates, mode=mode,
                                 name=name or "train_step")
        self.update_function = None
        # the random streams the step draws from (dropout, noise): sg.save keeps them too
        self.state += [sv for sv in self.function.random_states if sv not in self.state]

    def _build_data_parallel(self, grads, layer, mode, name):
        # Two functions (symgrad/distributed.py): the shard's gradients, running statistics,
        # losses and summaries into one buffer; after the allreduce, the update from it.
        from .distributed import DataParallel, example_count
        outs, self._plan = self._outputs()
        # The gradient of the shard's total times its number of examples: the weighting of
        # the ranks' sum enters the backward as its seed, not as a pass over the buffer.
        count = 1
        if self.comm.Get_size() > 1:
            count = example_count(self.inputs, self.total.dtype)
            grads = grad(self.total * count, self.params, disconnected=self._disconnected)
        dp = DataParallel(self.comm, self.params, grads, layer, outs, count)
        pairs = _check_pairs(self.optimizer.updates(list(self.params), dp.global_gradients()),
                             self.optimizer)
        _check_layer_updates(layer, pairs)
        self.updates = pairs + dp.averaged_layer_updates()
        self._collect_state()
        # Before compiling, so that ranks whose models differ fail at once, on every rank.
        dp.synchronise(self.params + self.state)
        name = name or "train_step"
        # An update that reads an input of the step (an lr given as sg.In) gets the call's
        # arguments too; the gradient function then need not read every input itself.
        reads = {id(v) for v in free_inputs([e for _, e in self.updates])}
        dp.update_reads_inputs = any(id(v) in reads for v in self.inputs)
        unused = "ignore" if dp.update_reads_inputs else "warn"
        # Random draws per example and batch norms computed as one process computes them
        # for the same rows of the global batch.
        start = dp.global_batch(self.inputs)
        self.function = function(self._given + ([start] if start is not None else []),
                                 [dp.flat], mode=mode, name=name + "_gradients",
                                 on_unused_input=unused)
        dp.count_collectives(self.function)
        extra = self._given if dp.update_reads_inputs else []
        self.update_function = function(dp.parts + [dp.inv_count] + extra, [],
                                        updates=self.updates, mode=mode, name=name + "_update",
                                        on_unused_input="ignore")
        random_states = [sv for sv in self.function.random_states if sv not in self.state]
        self.state += random_states
        dp.share_streams(random_states)
        self._parallel = dp

    def _collect_state(self):
        trained = {id(p) for p in self.params}
        self.state = [sv for sv, _ in self.updates
                      if isinstance(sv, SharedVariable) and id(sv) not in trained]

    def _outputs(self):
        # Collected after the optimizer ran, so an optimizer may record summaries too.
        self.summaries = active_scope().computable(self.inputs)
        outs, plan = _outputs(self.total, self.losses, self.summaries)
        self.keys = [k for k, _ in plan]
        return outs, plan

    @property
    def graph(self):
        """The compiled graph (outputs: total, losses, summaries; then the updates)."""
        return self.function.graph

    @property
    def source(self):
        """The generated C (None in mode "py")."""
        return self.function.source

    @property
    def mode(self):
        return self.function.mode

    def __call__(self, *args, **kwargs):
        """Run forward, backward and update once on one batch.

        Returns
        -------
        dict
            ``"loss"`` (the total), each named loss and each summary, as
            Python floats computed from the values before this step's update.
        """
        if self.comm is not None:
            values = self._parallel.run(self, args, kwargs)
        else:
            values = self.function(*args, **kwargs)
        return {key: float(values[i]) for key, i in self._plan}

    def __repr__(self):
        names = ", ".join(p.name or "?" for p in self.params)
        return (f"<TrainStep mode={self.mode!r} params=[{names}] keys={self.keys} "
                f"optimizer={self.optimizer!r}>")


def train_step(losses, inputs, params=None, optimizer=None, mode=None, name=None, comm=None):
    """Compile forward, backward and the optimizer's update into one callable step.

    Parameters
    ----------
    losses : Variable or dict of str -> Variable
        A 0-d float loss, or named 0-d float losses (multi-task, a
        regulariser, ...). The step minimises their sum, the total. A non-0-d
        entry raises ``NonScalarCostError`` naming its key. The key ``"loss"``
        is reserved for the total (allowed only as the single entry).
    inputs : Variable or list of Variable
        The step's arguments (a batch), bound by position or by name. An entry
        ``sg.In(var, value=default)`` may be left out of a call, as with
        :func:`symgrad.function` (Theano's ``In``: a corruption level, a
        learning rate that ``optimizer`` reads).
    params : list of SharedVariable, optional
        What to train. Default: every trainable float shared variable the
        total depends on, in creation order (not through ``stop_gradient``).
    optimizer : object, optional
        Anything with ``updates(params, grads) -> list of (shared, expr)``, like
        ``sg.optim.SGD``, ``Adam``, ``AdamW``. Default ``SGD(lr=0.01)``.
    mode : {"c", "py", "debug"}, optional
        Default ``sg.config.mode``.
    name : str, optional
        The compiled function's name (default ``"train_step"``).
    comm : mpi4py.MPI.Intracomm, optional
        Data-parallel training (``pip install "symgrad[mpi]"``, launched with
        ``mpiexec -n 4 python train.py``): every rank calls the step with its
        own shard of the global batch (axis 0 of the first input with an axis
        counts its examples; any count, 0 included). The gradients are
        averaged across the ranks weighted by their example counts -- the
        gradient of the global batch mean -- and the same update is applied
        on every rank; the losses and summaries returned are global means.
        Parameters and optimizer state are checked against rank 0's and take
        rank 0's values when the step is built. A rank that raises makes the
        others raise ``sg.DistributedError`` naming it; one that dies or stops
        calling, after ``SYMGRAD_MPI_TIMEOUT`` seconds (default 300). See
        ``symgrad/distributed.py``.

    Returns
    -------
    TrainStep
        Call it with a batch: ``step(X, y)`` returns ``{"loss": float, <each
        named loss>: float, <each summary>: float}``. ``step.params``,
        ``step.gradients`` and ``sg.debugprint(step)`` show what it does.

    Notes
    -----
    The step reports every summary of the active scope (see
    :func:`symgrad.summary`) whose graph it can compute from its inputs and
    shared variables; summaries that need other inputs are skipped. It also
    updates the running statistics of every training-mode batch norm
    (``sg.layers.BatchNorm2D(...)(x, training=True)``, ``sg.nn.batch_norm(...,
    training=True)``) that the total loss depends on. An
    unnamed total is named ``"loss"``, so gradients print as ``d(loss)/d(W)``.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> x, y = sg.vector("x"), sg.vector("y")
    >>> w = sg.shared(np.zeros(1), name="w")
    >>> err = ((w * x - y) ** 2).mean()
    >>> step = sg.train_step(err, [x, y], optimizer=sg.optim.SGD(lr=0.1), mode="py")
    >>> step(np.array([1.0, 2.0]), np.array([2.0, 4.0]))
    {'loss': 10.0}
    >>> w.get_value()
    array([1.])
    """
    return TrainStep(losses, inputs, params, optimizer, mode, name, comm)

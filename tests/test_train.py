"""sg.train_step and summaries, and the training examples."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import symgrad as sg

MODES = ["py", "c"]
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def regression(seed=0):
    rng = np.random.default_rng(seed)
    X, y = sg.matrix("X"), sg.vector("y")
    w = sg.shared(rng.normal(size=3), name="w")
    c = sg.shared(np.float64(0.5), name="c")
    data = (rng.normal(size=(8, 3)), rng.normal(size=8))
    return X, y, w, c, data


# --------------------------------------------------------------------------- losses

@pytest.mark.parametrize("mode", MODES)
def test_scalar_loss_one_sgd_step(mode):
    X, y, w, c, (xv, yv) = regression()
    w0, c0 = w.get_value(), float(c.get_value())
    loss = ((X @ w + c - y) ** 2).mean()
    step = sg.train_step(loss, [X, y], mode=mode)
    compiled, calls = step.function, []
    step.function = lambda *args: calls.append(args) or compiled(*args)
    out = step(xv, yv)
    step.function = compiled
    r = xv @ w0 + c0 - yv
    assert list(out) == ["loss"] and isinstance(out["loss"], float)
    assert out["loss"] == pytest.approx((r ** 2).mean(), rel=1e-12)
    # Default optimizer: SGD(lr=0.01).
    np.testing.assert_allclose(w.get_value(), w0 - 0.01 * xv.T @ (2 * r / 8), rtol=1e-12)
    np.testing.assert_allclose(c.get_value(), c0 - 0.01 * (2 * r / 8).sum(), rtol=1e-12)
    assert len(calls) == 1                      # one compiled call per step
    assert step.mode == mode and (step.source is None) == (mode == "py")


@pytest.mark.parametrize("mode", MODES)
def test_dict_of_losses_is_summed_and_reported_by_name(mode):
    X, y, w, c, (xv, yv) = regression(1)
    w0, c0 = w.get_value(), float(c.get_value())
    fit = ((X @ w + c - y) ** 2).mean()
    penalty = 0.1 * (w ** 2).sum()
    step = sg.train_step({"fit": fit, "penalty": penalty}, [X, y],
                         optimizer=sg.optim.SGD(lr=0.1), mode=mode)
    assert step.keys == ["loss", "fit", "penalty"]
    out = step(xv, yv)
    want_fit = float(((xv @ w0 + c0 - yv) ** 2).mean())
    want_pen = 0.1 * float((w0 ** 2).sum())
    assert out["fit"] == pytest.approx(want_fit, rel=1e-12)
    assert out["penalty"] == pytest.approx(want_pen, rel=1e-12)
    assert out["loss"] == pytest.approx(want_fit + want_pen, rel=1e-12)
    assert step.total.name == "loss" and set(step.losses) == {"fit", "penalty"}


def test_a_single_loss_named_loss_is_allowed():
    X, y, w, c, data = regression()
    step = sg.train_step({"loss": ((X @ w - y) ** 2).sum()}, [X, y], mode="py")
    assert step.keys == ["loss"]
    with pytest.raises(ValueError, match="'loss' is reserved"):
        sg.train_step({"loss": (w ** 2).sum(), "other": c * 1.0}, [], mode="py")


def test_non_scalar_loss_names_its_key_and_shape():
    X, y, w, c, data = regression()
    per_example = (X @ w - y) ** 2
    with pytest.raises(sg.NonScalarCostError, match=r"losses\['fit'\] is a 1-d float64 value of "
                                                    r"shape \(\?,\).*\.mean\(\)"):
        sg.train_step({"ok": (w ** 2).sum(), "fit": per_example}, [X, y])
    with pytest.raises(sg.NonScalarCostError, match=r"^losses is a 1-d"):
        sg.train_step(per_example, [X, y])
    with pytest.raises(TypeError):   # NonScalarCostError is a TypeError too
        sg.train_step(sg.outer(w, w), [])


@pytest.mark.parametrize("losses, err, match", [
    (3.0, TypeError, r"losses must be a symbolic Variable, got float"),
    ({}, ValueError, r"empty dict"),
    ({1: None}, TypeError, r"keys must be non-empty str"),
    ({"a": np.ones(())}, TypeError, r"losses\['a'\] must be a symbolic Variable, got ndarray"),
    ({"n": sg.shared(np.int64(3), name="n") * 2}, sg.NonDifferentiableError,
     r"losses\['n'\] is int64"),
])
def test_loss_arguments_are_checked(losses, err, match):
    with pytest.raises(err, match=match):
        sg.train_step(losses, [])


# --------------------------------------------------------------------------- parameters

def test_params_are_inferred_in_creation_order():
    b = sg.shared(np.zeros(2), name="b")                       # made first
    frozen = sg.shared(np.ones(2), name="frozen", trainable=False)
    counts = sg.shared(np.arange(2), name="counts")             # int: not trainable
    unused = sg.shared(np.ones(2), name="unused")
    held = sg.shared(np.ones(2), name="held")
    W = sg.shared(np.ones((2, 2)), name="W")
    x = sg.vector("x")
    loss = ((x @ W + b) * frozen + counts + sg.stop_gradient(held)).sum()
    step = sg.train_step(loss, [x], mode="py")
    assert step.params == [b, W]
    assert unused not in step.gradients and list(step.gradients) == [b, W]


def test_explicit_params_keep_their_order_and_are_checked():
    X, y, w, c, data = regression()
    loss = ((X @ w + c - y) ** 2).mean()
    step = sg.train_step(loss, [X, y], params=[c], mode="py")
    w0 = w.get_value()
    step(*data)
    assert step.params == [c] and np.array_equal(w.get_value(), w0)
    assert sg.train_step(loss, [X, y], params=(c, w), mode="py").params == [c, w]
    with pytest.raises(TypeError, match=r"params\[0\] must be a shared variable .*got <Variable X"):
        sg.train_step(loss, [X, y], params=[X])
    with pytest.raises(TypeError, match=r"params\[1\] must be a shared variable .*got int"):
        sg.train_step(loss, [X, y], params=[w, 3])
    with pytest.raises(TypeError, match=r"params\[0\] \(n\) holds int64"):
        sg.train_step(loss, [X, y], params=[sg.shared(np.int64(1), name="n")])
    with pytest.raises(ValueError, match="params lists w twice"):
        sg.train_step(loss, [X, y], params=[w, c, w])
    with pytest.raises(ValueError, match="params is empty"):
        sg.train_step(loss, [X, y], params=[])
    with pytest.raises(TypeError, match="params must be a list"):
        sg.train_step(loss, [X, y], params="w")
    with pytest.raises(sg.DisconnectedInputError, match="other"):
        sg.train_step(loss, [X, y], params=[w, sg.shared(np.ones(2), name="other")])


def test_nothing_to_train_and_bad_inputs():
    x = sg.vector("x")
    frozen = sg.shared(np.ones(2), trainable=False)
    with pytest.raises(ValueError, match="nothing to train"):
        sg.train_step((x * frozen).sum(), [x])
    w = sg.shared(np.ones(2), name="w")
    with pytest.raises(TypeError, match="inputs must be a Variable, an sg.In or a list"):
        sg.train_step((x * w).sum(), "x")
    with pytest.raises(sg.InputError, match="needs the input x"):
        sg.train_step((x * w).sum(), [])
    step = sg.train_step((x * w).sum(), x, mode="py")   # a single input Variable is fine
    assert step(np.ones(2)) == {"loss": 2.0}


def test_optimizer_is_checked():
    w = sg.shared(np.ones(2), name="w")
    loss = (w ** 2).sum()
    with pytest.raises(TypeError, match="must have a method updates"):
        sg.train_step(loss, [], optimizer=object())
    with pytest.raises(TypeError, match=r"an instance, got the class Adam; write Adam\(...\)"):
        sg.train_step(loss, [], optimizer=sg.optim.Adam)

    class Bad:
        def updates(self, params, grads):
            return None
    with pytest.raises(TypeError, match="Bad.updates must return a list"):
        sg.train_step(loss, [], optimizer=Bad())


@pytest.mark.parametrize("mode", MODES)
def test_gradients_are_inspectable_graph(mode):
    X, y, w, c, (xv, yv) = regression(2)
    step = sg.train_step(((X @ w + c - y) ** 2).mean(), [X, y], mode=mode)
    gw = step.gradients[w]
    assert isinstance(gw, sg.Variable) and gw.name == "d(loss)/d(w)"
    r = xv @ w.get_value() + float(c.get_value()) - yv
    np.testing.assert_allclose(sg.evaluate(gw, {X: xv, y: yv}), xv.T @ (2 * r / 8))
    text = sg.debugprint(step)
    assert "d(loss)/d(w)" in text and "update w <-" in text and "update c <-" in text
    assert sg.to_dot(step).startswith("digraph")
    assert step.graph is step.function.graph
    assert "TrainStep" in repr(step) and "params=[w, c]" in repr(step)


@pytest.mark.parametrize("mode", MODES)
def test_training_and_inference_graphs_share_parameters(mode):
    rng = np.random.default_rng(4)
    xv = rng.normal(size=(64, 2))
    yv = (xv[:, 0] + xv[:, 1] > 0).astype("int64")
    X, y = sg.matrix("X"), sg.vector("y", dtype="int64")
    layer = sg.layers.Dense(2, 2, rng=0, name="out")
    step = sg.train_step(sg.nn.cross_entropy(layer(X), y).mean(), [X, y],
                         optimizer=sg.optim.Adam(lr=0.1), mode=mode)
    predict = sg.function([X], layer(X).argmax(axis=1), mode=mode)
    first = [step(xv, yv)["loss"] for _ in range(60)]
    assert first[-1] < 0.5 * first[0]
    assert np.mean(predict(xv) == yv) > 0.9


# --------------------------------------------------------------------------- summaries

@pytest.mark.parametrize("mode", MODES)
def test_summaries_recorded_by_model_code_come_back(mode):
    X, y, w, c, (xv, yv) = regression(5)
    other = sg.vector("other")
    with sg.summary_scope():
        pred = X @ w + c
        sg.summary("pred_mean", pred.mean())
        sg.summary("w_norm", sg.sqrt((w ** 2).sum()))         # shared only: computable
        sg.summary("big", (pred > 0).sum())                     # int summary: a float
        sg.summary("needs_other", other.sum())                  # the step lacks `other`
        loss = sg.summary("mse", ((pred - y) ** 2).mean())
        step = sg.train_step(loss, [X, y], mode=mode)
    assert step.keys == ["loss", "pred_mean", "w_norm", "big", "mse"]
    w0, c0 = w.get_value(), float(c.get_value())
    out = step(xv, yv)
    p = xv @ w0 + c0
    assert out["pred_mean"] == pytest.approx(p.mean(), rel=1e-12)
    assert out["w_norm"] == pytest.approx(np.linalg.norm(w0), rel=1e-12)   # before the update
    assert out["big"] == float((p > 0).sum()) and isinstance(out["big"], float)
    assert out["mse"] == out["loss"]


def test_summary_scopes_isolate_and_restore():
    x = sg.vector("x")
    w = sg.shared(np.ones(2), name="w")
    outer = sg.summary_scope()
    with outer:
        sg.summary("outer_sum", x.sum())
        with sg.summary_scope() as inner:
            sg.summary("inner_max", x.max())
            step_in = sg.train_step((x * w).sum(), [x], mode="py")
        step_out = sg.train_step((x * w).sum(), [x], mode="py")
    assert step_in.keys == ["loss", "inner_max"]
    assert step_out.keys == ["loss", "outer_sum"]
    assert inner.names() == ["inner_max"] and outer.names() == ["outer_sum"]
    with outer:                                   # a scope can be re-entered
        sg.summary("again", x.min())
    assert outer.names() == ["outer_sum", "again"] and len(outer) == 2
    from symgrad.summaries import active_scope
    assert active_scope() is not outer and active_scope() is not inner
    outer.clear()
    assert len(outer) == 0


def test_latest_computable_record_of_a_name_wins():
    w = sg.shared(np.array([1.0, 2.0]), name="w")

    def model(x):
        h = x * w
        sg.summary("h_mean", h.mean())
        return h.sum()

    a, b = sg.vector("a"), sg.vector("b")
    with sg.summary_scope() as scope:
        loss_a = model(a)        # the training graph
        loss_b = model(b)        # another graph on another input records h_mean again
        step = sg.train_step(loss_a, [a], mode="py")
        both = sg.train_step(loss_a + loss_b, [a, b], mode="py")
    assert len(scope) == 2 and scope.names() == ["h_mean"]
    # `step` cannot compute the record on b, so it reports the one on a.
    assert step(np.array([1.0, 1.0]))["h_mean"] == pytest.approx(1.5)
    # `both` can compute both records; the later one (on b) wins. w is now [0.99, 1.99].
    out = both(np.array([1.0, 1.0]), np.array([3.0, 3.0]))
    assert out["h_mean"] == pytest.approx((3 * np.array([0.99, 1.99])).mean())


def test_summary_arguments_are_checked():
    x = sg.vector("x")
    with sg.summary_scope():
        with pytest.raises(sg.ShapeError, match=r"summary 'acts': a summary is one number, got a "
                                                r"1-d float64 value of shape \(\?,\).*\.mean\(\)"):
            sg.summary("acts", x * 2)
        with pytest.raises(TypeError, match="name must be a non-empty str"):
            sg.summary("", x.sum())
        with pytest.raises(TypeError, match="name must be a non-empty str"):
            sg.summary(3, x.sum())
        with pytest.raises(TypeError, match="expected a symbolic Variable, got float"):
            sg.summary("v", 1.0)
        with pytest.raises(ValueError, match="'loss' is reserved"):
            sg.summary("loss", x.sum())


def test_summary_named_like_a_loss():
    x = sg.vector("x")
    w = sg.shared(np.ones(2), name="w")
    with sg.summary_scope():
        fit = sg.summary("fit", (x * w).sum())     # the same variable: reported once
        step = sg.train_step({"fit": fit}, [x], mode="py")
        assert step.keys == ["loss", "fit"]
        sg.summary("fit", (x * w).mean())          # another variable, same name: refused
        with pytest.raises(ValueError, match="summary 'fit' has the name of a loss"):
            sg.train_step({"fit": fit}, [x], mode="py")


def test_step_takes_inputs_by_name():
    X, y, w, c, (xv, yv) = regression(6)
    step = sg.train_step(((X @ w + c - y) ** 2).mean(), [X, y], mode="py")
    assert step(y=yv, X=xv)["loss"] > 0
    with pytest.raises(sg.InputError, match="missing input 'y'"):
        step(xv)


# --------------------------------------------------------------------------- examples
# The longer example runs (5-10 s of CPU each: compiling and training a network) are
# behind `slow`, which .ci/run runs after the README's command; train_digits.py, the
# main example, and the short ones stay in it.

def _run_example(name, *args, timeout=300, **env_vars):
    env = dict(os.environ, **env_vars)
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True,
                          text=True, timeout=timeout, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_train_digits_example(tmp_path):
    pytest.importorskip("sklearn")
    out = _run_example("train_digits.py", "--out", str(tmp_path))
    accuracy = float(re.search(r"^test accuracy: ([0-9.]+)", out, re.M).group(1))
    assert accuracy >= 0.95, out
    assert "d(loss)/d(layer2.W)" in out
    assert (tmp_path / "digits_mlp.npz").exists()
    names = list(sg.checkpoint.read(tmp_path / "digits_mlp.npz"))
    assert names[:4] == ["layer1.W", "layer1.b", "layer2.W", "layer2.b"]
    assert "layer1.W.m" in names and "layer2.b.t" in names
    reloaded = float(re.search(r"reloaded into a new model: test accuracy ([0-9.]+)", out).group(1))
    assert reloaded == accuracy
    svg = tmp_path / "grad_layer2_W.svg"
    assert svg.exists() or "no SVG drawn" in out


@pytest.mark.slow
def test_train_lenet_example(tmp_path):
    # The example's short run: LeNet-5 on the digits reaches 98% of the held-out images
    # (issue #15). One thread: the suite runs its tests side by side.
    pytest.importorskip("sklearn")
    out = _run_example("train_lenet.py", "--quick", "--out", str(tmp_path),
                       SYMGRAD_NUM_THREADS="1")
    epochs = re.findall(r"^epoch +(\d+): train loss ([0-9.]+), test accuracy ([0-9.]+)$", out,
                        re.M)
    assert [int(e) for e, _, _ in epochs] == list(range(1, 7)), out
    losses = [float(loss) for _, loss, _ in epochs]
    assert losses[-1] < losses[0] / 4, out
    accuracy = float(re.search(r"^test accuracy: ([0-9.]+) \(450 held-out", out, re.M).group(1))
    assert accuracy >= 0.98, out
    assert accuracy == float(epochs[-1][2])
    names = list(sg.checkpoint.read(tmp_path / "lenet5.npz"))
    assert names[:4] == ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"], names
    reloaded = float(re.search(r"reloaded into a new network: test accuracy ([0-9.]+)",
                               out).group(1))
    assert reloaded == accuracy


def test_per_example_gradients_example():
    out = _run_example("per_example_gradients.py")
    assert "d(losses)/d(layer1.W): (16, 8, 16) (batch 16 x (8, 16))" in out
    rows = re.findall(r"^\s+(\d+)  ([0-9.]+)   ([0-9.]+)$", out, re.M)
    assert sorted(int(k) for k, _, _ in rows) == list(range(16))
    norms = [float(n) for _, _, n in rows]
    assert norms == sorted(norms, reverse=True) and norms[-1] > 0
    for what in ("the minibatch gradient", "one example at a time"):
        diff = float(re.search(rf"{what}: max difference ([0-9.e+-]+)", out).group(1))
        assert diff < 1e-12, out


def test_multitask_example():
    out = _run_example("multitask.py")
    lines = out.splitlines()
    assert ("each call returns ['loss', 'sector', 'radius', 'weight_penalty', 'trunk_activity', "
            "'sector_accuracy']") in out
    assert "each call returns ['loss', 'radius', 'weight_penalty', 'trunk_activity']" in out
    radius_only = next(line for line in lines if line.startswith("heads ('radius',)"))
    assert "sector_head" not in radius_only and "radius_head.W" in radius_only
    first_last = next(line for line in lines if line.strip().startswith("last step:"))
    accuracy = float(re.search(r"sector_accuracy ([0-9.]+)", first_last).group(1))
    assert accuracy > 0.8


@pytest.mark.slow
def test_char_lstm_example():
    # The short run the example's docstring states, and the target it states for it.
    # One thread: the model is small, and the suite runs its tests side by side.
    out = _run_example("char_lstm.py", "--quick", SYMGRAD_NUM_THREADS="1")
    stated = re.search(r"char_lstm\.py --quick .*below ([0-9.]+)",
                       (EXAMPLES / "char_lstm.py").read_text()).group(1)
    final, target = re.search(r"^held-out cross-entropy ([0-9.]+) nats per character "
                              r"\(target ([0-9.]+)\)", out, re.M).groups()
    assert target == stated and float(final) <= float(stated), out
    unigram = float(re.search(r"character frequencies alone on the held-out text: ([0-9.]+)",
                              out).group(1))
    curve = [float(x) for x in re.findall(r"^\s+\d+  [0-9.]+  ([0-9.]+)  #+$", out, re.M)]
    assert len(curve) == 10 and curve[-1] < curve[0] and curve[-1] < unigram - 0.8, out
    sampled = [part.split("\n", 1)[1] for part in out.split("sampled at temperature ")[1:]]
    samples = [s for part in sampled for s in part.split("\n  ---\n")[:2]]
    assert len(sampled) == 2 and len(samples) == 4, out   # 2 per temperature, from the prompt
    assert all(s.startswith("  The ") and len(s) > 240 for s in samples), out


@pytest.mark.slow
def test_denoising_autoencoder_example(tmp_path):
    # --quick: 8 epochs on the digits, a few seconds of CPU; one thread, as the suite runs
    # tests side by side
    pytest.importorskip("sklearn")  # its bundled digits file
    out = _run_example("denoising_autoencoder.py", "--quick", "--out", str(tmp_path),
                       SYMGRAD_NUM_THREADS="1")
    before = float(re.search(r"error before training: ([0-9.]+)", out).group(1))
    epochs = [float(e) for e in re.findall(r"^epoch +\d+: held-out reconstruction error "
                                           r"([0-9.]+)", out, re.M)]
    assert len(epochs) == 8, out
    # falls: far below the untrained model's, and still falling after the first epoch
    assert epochs[-1] < 0.5 * before and epochs[-1] < epochs[0], out
    assert re.search(r"reconstruction error: [0-9.]+ -> [0-9.]+ nats per image", out)
    png = tmp_path / "dae_filters.png"
    assert png.exists() or "no PNG drawn: matplotlib is not installed" in out, out


@pytest.mark.slow
def test_train_resnet_example():
    # The residual network with batch norm, in its short run: the inference graph (running
    # statistics) classifies the held-out digits and does not depend on the batch.
    pytest.importorskip("sklearn")
    out = _run_example("train_resnet.py", "--quick", SYMGRAD_NUM_THREADS="1")
    accuracy = float(re.search(r"^test accuracy: ([0-9.]+)", out, re.M).group(1))
    assert accuracy >= 0.95, out
    assert "updates the running statistics of 5 batch norms" in out
    assert "prediction alone equals its prediction in the batch: True" in out
    losses = [float(v) for v in re.findall(r"^epoch \d+: train loss ([0-9.]+)", out, re.M)]
    assert len(losses) == 3, out

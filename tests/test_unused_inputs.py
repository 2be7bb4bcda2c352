"""``sg.function`` warns of inputs the graph never reads (issue 11, item 20)."""

import pickle
import warnings

import numpy as np
import pytest

import symgrad as sg


def _warnings_of(build):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = build()
    return result, [w for w in caught if issubclass(w.category, sg.UnusedInputWarning)]


@pytest.mark.parametrize("mode", ["py", "c"])
def test_an_unused_input_is_named_at_the_users_line(mode):
    x, y, z = sg.vector("x"), sg.vector("y"), sg.vector()
    f, caught = _warnings_of(lambda: sg.function([x, y, z], x * 2, mode=mode))
    assert [str(w.message).split(" is not")[0] for w in caught] == [
        "sg.function: input 'y' (position 1)", "sg.function: input #2 (unnamed)"]
    assert all(w.filename == __file__ for w in caught)
    assert issubclass(sg.UnusedInputWarning, UserWarning)
    assert "typo" in str(caught[0].message)
    # the function still works, ignoring the unused values
    np.testing.assert_array_equal(f(np.ones(2), np.zeros(3), np.zeros(1)), [2.0, 2.0])


def test_inputs_used_through_updates_or_givens_count_as_used():
    x, y, k = sg.vector("x"), sg.vector("y"), sg.scalar("k")
    s = sg.shared(np.zeros(2), name="s")
    _, caught = _warnings_of(lambda: sg.function([x, y], x.sum(), updates=[(s, y)], mode="py"))
    assert caught == []
    _, caught = _warnings_of(lambda: sg.function([x, k], x * 2, givens={x: k + sg.zeros(2)},
                                                 mode="py"))
    # k feeds the replacement; x itself is replaced everywhere, so its value is ignored
    assert [str(w.message).split(" is not")[0] for w in caught] == [
        "sg.function: input 'x' (position 0)"]


def test_no_warning_when_every_input_is_used_nor_on_unpickling():
    x, y = sg.vector("x"), sg.vector("y")
    f, caught = _warnings_of(lambda: sg.function([x, y], x + y, mode="py"))
    assert caught == []
    g, caught = _warnings_of(lambda: sg.function([x, y], x, mode="py"))
    assert len(caught) == 1
    _, caught = _warnings_of(lambda: pickle.loads(pickle.dumps(g)))
    assert caught == []  # told once, when it was built


def test_train_step_warns_of_an_unused_batch_input_at_the_users_line():
    X, y, unused = sg.matrix("X"), sg.vector("y"), sg.vector("w")
    W = sg.shared(np.zeros((3, 1)), name="W")
    loss = ((X @ W)[:, 0] - y).mean() ** 2
    _, caught = _warnings_of(lambda: sg.train_step(loss, [X, y], mode="py"))
    assert caught == []
    _, caught = _warnings_of(lambda: sg.train_step(loss, [X, y, unused], mode="py"))
    assert [str(w.message).split(" is not")[0] for w in caught] == [
        "sg.function: input 'w' (position 2)"]
    assert caught[0].filename == __file__

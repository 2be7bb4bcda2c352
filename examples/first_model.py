"""A first symgrad program: define a model, derive its gradient, look at it, train.

A two-layer network learns to tell which of two noisy circles a 2-d point
belongs to. Everything is graph: the forward pass, the gradient (sg.grad) and
the SGD update, compiled together into one function called once per step.

    python examples/first_model.py
"""

import numpy as np

import symgrad as sg

rng = np.random.default_rng(0)


def make_data(n):
    """Points on two noisy circles (radius 1 and 2); the label says which."""
    labels = rng.integers(0, 2, size=n)
    angle = rng.uniform(0, 2 * np.pi, size=n)
    radius = 1.0 + labels + rng.normal(0, 0.15, size=n)
    points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return points, labels.astype("int64")


# -- define the model: parameters are shared variables, inputs are symbolic
X = sg.matrix("X")                      # (batch, 2) points
y = sg.vector("y", dtype="int64")       # (batch,) labels
W1 = sg.shared(rng.normal(0, 0.5, (2, 16)), name="W1")
b1 = sg.shared(np.zeros(16), name="b1")
W2 = sg.shared(rng.normal(0, 0.5, (16, 2)), name="W2")
b2 = sg.shared(np.zeros(2), name="b2")

hidden = sg.tanh(X @ W1 + b1)
logits = hidden @ W2 + b2
loss = sg.nn.cross_entropy(logits, y).mean()
loss.name = "loss"
accuracy = sg.eq(logits.argmax(axis=1), y).astype("float64").mean()

# -- derive the gradient: an ordinary graph you can print and compile
params = [W1, b1, W2, b2]
grads = sg.grad(loss, params)
print("The gradient of the loss with respect to W1:")
print(sg.debugprint(grads[0]))

# -- compile forward, backward and the update together; train a few steps
lr = 0.5
step = sg.function([X, y], [loss, accuracy],
                   updates=[(p, p - lr * g) for p, g in zip(params, grads)], name="train_step")
evaluate = sg.function([X, y], accuracy, name="evaluate")

train_x, train_y = make_data(512)
test_x, test_y = make_data(256)
for epoch in range(200):
    batch = rng.choice(512, size=64, replace=False)
    step_loss, step_acc = step(train_x[batch], train_y[batch])
    if epoch % 40 == 0 or epoch == 199:
        print(f"step {epoch:3d}  loss {float(step_loss):.4f}  batch accuracy {float(step_acc):.2f}")
print(f"test accuracy: {float(evaluate(test_x, test_y)):.3f}")

"""Look at a gradient graph: as text, as a formula, as a picture, as compiled C.

A one-layer regression model, its gradient, and the training step compiled
from both; then the tools that show what was built:

- ``sg.debugprint``: the graph as text, one node per line. Gradient nodes are
  named (``d(loss)/d(W)``) and marked with the forward op and line they come
  from; for a compiled step, ``[K3]`` says which step of the kernel computes
  a node and ``[K5: fused loop of 3 ops]`` / ``[in K5]`` which nodes share a loop;
- ``sg.pprint``: a small graph as a formula;
- ``sg.render``: the picture (forward ops blue, gradient ops orange, fused
  loops in dashed boxes), written to ``docs/gradient_graph.svg``;
- ``sg.explain``: the compiled step summed up (steps, BLAS calls, buffers,
  FLOPs and workspace bytes per call at an example batch);
- ``step.source``: the generated C, each step headed by its nodes and lines.

    python examples/inspect_gradient.py [output directory, default docs/]

Drawing needs Graphviz (``pip install graphviz`` and the ``dot`` program,
``apt-get install graphviz``); without it the picture is skipped, with a note.
"""

import os
import sys

import numpy as np

import symgrad as sg

rng = np.random.default_rng(0)

# -- a small model: y ~ tanh(X @ W + b), mean squared error
X = sg.matrix("X")                                     # (batch, 3)
Y = sg.matrix("Y")                                     # (batch, 2)
W = sg.shared(rng.normal(0, 0.5, (3, 2)), name="W")
b = sg.shared(np.zeros(2), name="b")
pred = sg.tanh(X @ W + b)
loss = ((pred - Y) ** 2).mean()
loss.name = "loss"

# -- the gradient as sg.grad derives it: an ordinary graph
gW, gb = sg.grad(loss, [W, b])
print("d(loss)/d(b), as derived:")
print(sg.debugprint(gb))
print()
print("as a formula:")
print(sg.pprint(gb))
print()

# -- the training step compiled from it: rewritten, fused, one C kernel
step = sg.train_step(loss, [X, Y], optimizer=sg.optim.SGD(lr=0.1))
print("the compiled training step:")
print(sg.debugprint(step))
print()
batch_x, batch_y = rng.normal(size=(32, 3)), rng.normal(size=(32, 2))
print(sg.explain(step, batch_x, batch_y))
print()

out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..",
                                                              "docs")
os.makedirs(out_dir, exist_ok=True)
picture = os.path.join(out_dir, "gradient_graph.svg")
try:
    sg.render(step, picture)
    print(f"wrote {os.path.normpath(picture)}")
except RuntimeError as e:  # no Graphviz: the message says how to install it
    print(f"no picture: {e}")
print()

print("the generated C (step.source): the comments that head its steps and BLAS calls")
in_comment = False
for line in step.source.splitlines():
    text = line.strip()
    in_comment = in_comment or text.startswith(("/* K", "/* BLAS"))
    if in_comment:
        print(line)
    in_comment = in_comment and not text.endswith("*/")

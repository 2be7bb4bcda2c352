"""A model that builds its own losses: two optional task heads, one dict of losses.

The model here is not "a function to predictions" plus "a loss function": it
is code that, given a batch, builds whatever losses its enabled heads define
(and a weight penalty) and returns them as a dict. ``sg.train_step`` sums them,
reports each by name, and also reports the summaries the model recorded with
``sg.summary`` — the trainer is told about none of it.

Data: points in the plane; task "sector" classifies which third of the circle
a point's angle falls in, task "radius" regresses its distance from the origin.

    python examples/multitask.py
"""

import numpy as np

import symgrad as sg

rng = np.random.default_rng(0)


def make_data(n):
    points = rng.normal(0.0, 1.0, size=(n, 2))
    angle = np.arctan2(points[:, 1], points[:, 0]) + np.pi           # 0 .. 2 pi
    sector = np.minimum((angle / (2 * np.pi / 3)).astype("int64"), 2)
    radius = np.hypot(points[:, 0], points[:, 1])
    return points, sector, radius


class TwoHeadNet:
    """A shared trunk with an optional classification head and an optional regression head."""

    def __init__(self, heads=("sector", "radius"), hidden=32, seed=0):
        self.heads = tuple(heads)
        self.trunk = sg.layers.Dense(2, hidden, activation=sg.tanh, rng=seed, name="trunk")
        self.sector = (sg.layers.Dense(hidden, 3, rng=seed + 1, name="sector_head")
                       if "sector" in self.heads else None)
        self.radius = (sg.layers.Dense(hidden, 1, rng=seed + 2, name="radius_head")
                       if "radius" in self.heads else None)

    def losses(self, x, sector=None, radius=None):
        """The losses of the enabled heads for which targets are given, plus a weight penalty."""
        h = self.trunk(x)
        sg.summary("trunk_activity", abs(h).mean())
        losses = {}
        if self.sector is not None and sector is not None:
            logits = self.sector(h)
            losses["sector"] = sg.nn.cross_entropy(logits, sector).mean()
            hits = sg.eq(logits.argmax(axis=1), sector).astype("float64")
            sg.summary("sector_accuracy", hits.mean())
        if self.radius is not None and radius is not None:
            err = self.radius(h)[:, 0] - radius
            losses["radius"] = 0.5 * (err ** 2).mean()
        heads = [layer for layer in (self.trunk, self.sector, self.radius) if layer is not None]
        penalty = (heads[0].W ** 2).sum()
        for layer in heads[1:]:
            penalty = penalty + (layer.W ** 2).sum()
        losses["weight_penalty"] = 1e-4 * penalty
        return losses


def train(model, x, targets, data, steps=600):
    """Train ``model`` on the given targets ({name: symbolic input}); data holds the arrays."""
    inputs = [x, *targets.values()]
    with sg.summary_scope():                       # this model's summaries only
        losses = model.losses(x, **targets)
        step = sg.train_step(losses, inputs, optimizer=sg.optim.Adam(lr=0.01, clip_norm=5.0))
    print(f"heads {model.heads}: trains {[p.name for p in step.params]}")
    print(f"  each call returns {step.keys}")
    arrays = [data[v.name] for v in inputs]
    for _ in range(steps):
        idx = rng.choice(len(arrays[0]), size=64, replace=False)
        out = step(*[a[idx] for a in arrays])
    print("  last step: " + ", ".join(f"{k} {v:.4f}" for k, v in out.items()))
    return out


def main():
    points, sector, radius = make_data(2000)
    data = {"x": points, "sector": sector, "radius": radius}
    x, s, r = sg.matrix("x"), sg.vector("sector", dtype="int64"), sg.vector("radius")

    both = TwoHeadNet(heads=("sector", "radius"))
    out = train(both, x, {"sector": s, "radius": r}, data)

    only_radius = TwoHeadNet(heads=("radius",))     # the same code, one head switched off
    train(only_radius, x, {"radius": r}, data)
    return out


if __name__ == "__main__":
    main()

"""A character-level LSTM language model: train it, watch its loss fall, sample text.

The text is the documentation that Python's ``help()`` shows (``help("if")``),
which ships with every Python in the standard library's ``pydoc_data``
module: about 465,000 characters of English with code in it, nothing to
download. The last 5% is held out to measure the model on text it never saw.

The model reads one character at a time (a one-hot vector) and predicts the
next: ``sg.layers.LSTM`` -- PyTorch's gates and weight layout, the time
loop an ``sg.scan`` -- then a dense layer to one logit per character. The
train step (forward through the loop, back-propagation through time, Adam)
is one C call per batch. Sampling is a second ``sg.scan``, written out here:
each step draws a character and feeds it back into the LSTM's cell, so a
whole paragraph comes from one call.

What it reaches, as per-character cross-entropy on the held-out text (nats;
about 3.2 for a model that knows only how often each character occurs, 0
for a perfect one):

    python examples/char_lstm.py           # 2,000 steps, ~6 min of CPU: below 1.3
    python examples/char_lstm.py --quick   # 200 steps of a smaller model, ~10 s: below 2.3

(one run reached 1.13 and 1.97). The script stops with an error if the
held-out loss misses its target. Options: --steps, --hidden, --seq-len,
--batch-size, --lr, --target, --text FILE (train on another text), --mode
c|py; --help lists them.
"""

import argparse
import sys

import numpy as np

import symgrad as sg

try:
    from tqdm import tqdm
except ImportError:  # the bar is a nicety; train without it
    tqdm = None

FULL = dict(steps=2000, hidden=256, seq_len=64, batch_size=32, lr=3e-3, target=1.3)
QUICK = dict(steps=200, hidden=64, seq_len=32, batch_size=32, lr=1e-2, target=2.3)


def load_text(path=None):
    if path is not None:
        with open(path, encoding="utf-8") as f:
            return f.read()
    from pydoc_data.topics import topics
    return "\n\n".join(topics[key] for key in sorted(topics))


def windows(data, starts, length):
    """Rows of ``length + 1`` characters: inputs ``[:, :-1]``, next characters ``[:, 1:]``."""
    rows = data[starts[:, None] + np.arange(length + 1)]
    return rows[:, :-1], rows[:, 1:]


class CharLSTM:
    """One-hot characters -> LSTM -> logits over the vocabulary."""

    def __init__(self, vocab, hidden, rng):
        self.vocab = vocab
        self.lstm = sg.layers.LSTM(vocab, hidden, batch_first=True, rng=rng)
        self.head = sg.layers.Dense(hidden, vocab, rng=rng, name="head")

    def __call__(self, chars):
        """``(batch, time)`` character codes -> ``(batch * time, vocab)`` logits."""
        hs, _ = self.lstm(sg.one_hot(chars, self.vocab))
        return self.head(hs.reshape((-1, self.lstm.hidden_size)))

    def sampler(self):
        """A compiled ``(prompt, noise, temperature) -> characters``: every sample in one call.

        The prompt is read by the layer (its own scan); its final state starts
        a scan of our own. ``noise`` holds Gumbel noise ``(steps, n, vocab)``:
        ``argmax(logits / temperature + noise)`` is a draw from
        ``softmax(logits / temperature)`` (the Gumbel-max trick), so the random
        numbers come from NumPy and the choice happens inside the loop.
        """
        prompt = sg.vector("prompt", dtype="int64")
        noise = sg.tensor3("noise")
        temperature = sg.scalar("temperature")
        n = noise.shape[1]
        prompts = sg.broadcast_to(prompt[None, :], (n, prompt.shape[0]))   # one per sample
        _, (h, c) = self.lstm(sg.one_hot(prompts, self.vocab))

        def step(noise_t, h, c):          # a slice of each sequence, then each fed-back state
            char = sg.argmax(self.head(h) / temperature + noise_t, axis=1)
            h, c = self.lstm.cell(0, sg.one_hot(char, self.vocab), [h, c])   # layer 0, one step
            return [char, h, c]

        # outputs_info: None for an output that is not fed back (the characters)
        (chars, _, _), _ = sg.scan(step, sequences=noise, outputs_info=[None, h[0], c[0]],
                                   name="sample")
        return sg.function([prompt, noise, temperature], chars.T, name="sample")


def sample(fn, prompt, codes, chars, n, length, temperature, rng):
    noise = rng.gumbel(size=(length, n, len(chars))).astype("float32")
    out = fn(np.array([codes[c] for c in prompt]), noise, np.float32(temperature))
    return [prompt + "".join(chars[k] for k in row) for row in out]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run of a smaller model")
    for key, value in FULL.items():
        parser.add_argument("--" + key.replace("_", "-"), type=type(value), default=None,
                            help=f"default {value} ({QUICK[key]} with --quick)")
    parser.add_argument("--text", help="train on this UTF-8 file instead of Python's help text")
    parser.add_argument("--mode", choices=("c", "py"), default=sg.config.mode)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    sg.config.mode = args.mode
    sg.config.floatX = "float32"    # the dtype of every float variable and parameter below
    rng = np.random.default_rng(args.seed)

    # -- data: characters to integer codes; the last 5% held out
    text = load_text(args.text)
    chars = sorted(set(text))
    codes = {ch: k for k, ch in enumerate(chars)}
    data = np.array([codes[ch] for ch in text], dtype=np.int64)
    split = int(0.95 * len(data))
    train, held_out = data[:split], data[split:]
    n_eval = min(len(held_out) - 1, 8192 if args.quick else 32768) // args.seq_len
    eval_x, eval_y = windows(held_out, np.arange(n_eval) * args.seq_len, args.seq_len)
    counts = np.bincount(train, minlength=len(chars)) / len(train)
    unigram = -np.log(counts[held_out] + 1e-12).mean()
    print(f"{len(text):,} characters, {len(chars)} distinct; training on {len(train):,}, "
          f"measuring on {n_eval * args.seq_len:,} held out")
    print(f"cross-entropy of character frequencies alone on the held-out text: {unigram:.3f}")

    # -- the graphs: a train step, a loss without updates, a sampler; one set of parameters
    X = sg.matrix("X", dtype="int64")         # (batch, time) codes
    Y = sg.matrix("Y", dtype="int64")         # the next character of each
    model = CharLSTM(len(chars), args.hidden, rng)
    loss = sg.nn.cross_entropy(model(X), Y.reshape((-1,))).mean()
    step = sg.train_step(loss, [X, Y], optimizer=sg.optim.Adam(lr=args.lr, clip_norm=1.0))
    evaluate = sg.function([X, Y], loss, name="evaluate")
    sampler = model.sampler()

    # -- train on random windows; every tenth of the way, the held-out loss
    curve = []
    bar = tqdm(total=args.steps, desc="training", unit="step") if tqdm else None
    say = bar.write if bar is not None else print
    recent = []
    for t in range(1, args.steps + 1):
        x, y = windows(train, rng.integers(0, len(train) - args.seq_len - 1, args.batch_size),
                       args.seq_len)
        recent.append(step(x, y)["loss"])
        if bar is not None:
            bar.set_postfix(loss=f"{recent[-1]:.3f}", refresh=False)
            bar.update(1)
        if t % max(1, args.steps // 10) == 0 or t == args.steps:
            curve.append((t, float(np.mean(recent)), float(evaluate(eval_x, eval_y))))
            say(f"step {t:5d}  train {curve[-1][1]:.3f}  held-out {curve[-1][2]:.3f}")
            recent = []
    if bar is not None:
        bar.close()

    print("\nthe loss curve (mean train loss since the last row; held-out at that step):")
    top = max(c[1] for c in curve)
    for t, train_loss, test_loss in curve:
        print(f"{t:6d}  {train_loss:.3f}  {test_loss:.3f}  " + "#" * round(40 * test_loss / top))

    for temperature in (0.5, 1.0):
        print(f"\nsampled at temperature {temperature} (prompt 'The '):")
        for line in sample(sampler, "The ", codes, chars, 2, 240, temperature, rng):
            print("  " + line.replace("\n", "\n  "))
            print("  ---")

    final = curve[-1][2]
    print(f"\nheld-out cross-entropy {final:.3f} nats per character (target {args.target})")
    if final > args.target:
        sys.exit(f"the held-out loss {final:.3f} missed its target {args.target}")
    return final


if __name__ == "__main__":
    main()

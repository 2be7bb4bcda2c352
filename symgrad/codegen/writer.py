"""A tiny indenting writer for C text."""

import contextlib


class CWriter:
    """Collects lines of C; ``with w.block("for (...)"):`` indents a braced block."""

    def __init__(self):
        self.lines = []
        self.depth = 0

    def __call__(self, text=""):
        for line in text.split("\n"):
            self.lines.append(("    " * self.depth + line) if line else "")

    @contextlib.contextmanager
    def block(self, head):
        self(head + " {")
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            self("}")

    def text(self):
        return "\n".join(self.lines) + "\n"

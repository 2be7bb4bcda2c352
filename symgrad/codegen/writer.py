"""A tiny indenting writer for C text.

Comments are lines of their own (``w.comment(...)``), kept apart from the code:
``text()`` is what a reader sees (``f.source``), ``code()`` the same lines with
every comment blank -- what the C compiler acts on, hence what the cache key
hashes (a kernel whose comments alone differ is the same library). Nothing reads
the C back to tell one from the other.
"""

import contextlib

__all__ = ["CWriter", "Comment", "Unit", "CSource"]


class Comment(str):
    """A line of a comment (``CWriter.comment``): blank in ``CWriter.code()``."""

    __slots__ = ()


class CWriter:
    """Collects lines of C; ``with w.block("for (...)"):`` indents a braced block."""

    def __init__(self):
        self.lines = []
        self.depth = 0

    def __call__(self, text=""):
        for line in text.split("\n"):
            self.lines.append(("    " * self.depth + line) if line else "")

    def comment(self, text):
        """``text`` (one or more lines, already a valid C comment: ``/* ... */``) as
        comment lines."""
        for line in text.split("\n"):
            self.lines.append(Comment("    " * self.depth + line))

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
        return join_text(self.lines)

    def code(self):
        return join_code(self.lines)


def join_text(lines):
    """Lines as C text, comments included."""
    return "\n".join(lines) + "\n"


def join_code(lines):
    """Lines as C text, each comment line blank (line numbers stay those of the text)."""
    return "\n".join("" if type(ln) is Comment else ln for ln in lines) + "\n"


class Unit:
    """One file of a library's source: a C translation unit (``.c``) or a header the
    units include (``.h``, written next to them).

    ``lines`` are C lines, those of comments marked (``codegen.writer.Comment``), or
    a string, all code:
    ``text`` holds them all (what is written, compiled and read), ``code`` the same
    with each comment line blank, what the cache key hashes. ``glue``: the unit
    only checks, allocates and calls, and is compiled at ``-O0``.
    """

    __slots__ = ("name", "text", "code", "glue")

    def __init__(self, name, lines, glue=False):
        stem, _, ext = name.rpartition(".") if isinstance(name, str) else ("", "", "")
        if not (stem.isascii() and stem.isidentifier() and ext in ("c", "h")):
            raise ValueError(f"a unit's name must be a C identifier ending in .c or .h, "
                             f"got {name!r}")
        self.name, self.glue = name, bool(glue)
        if isinstance(lines, str):  # text with no comment marked: all of it is code
            self.text = self.code = lines
        else:
            self.text, self.code = join_text(lines), join_code(lines)


class CSource(str):
    """C source in translation units: as a string, the readable whole, each unit
    headed by its file name, which is also one translation unit of its own;
    ``units`` the files ``compiler.compile_library`` builds, the ``.c`` ones in
    parallel (each after the ``.h`` ones, as ``#include``), then links.

    ``prelude``: a header of symgrad's ``include/`` that each ``.c`` unit includes
    first, before the ``.h`` units (which include it too): a precompiled header only
    stands in for the first thing a unit includes (``compiler.py``)."""

    def __new__(cls, units, prelude=None):
        units = tuple(units)
        self = super().__new__(cls, "".join(f"/* ==== {u.name} ==== */\n{u.text}\n"
                                            for u in units))
        self.units = units
        self.prelude = prelude
        return self

    def __reduce__(self):  # a plain string once pickled or copied
        return (str, (str(self),))

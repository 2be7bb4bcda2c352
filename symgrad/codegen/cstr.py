"""The only ways text from outside the code generator enters generated C.

A function's name, a variable's name, a file path or an op's parameter may
hold anything: ``*/`` and a newline would end a comment and let the rest run
as code when the kernel loads, a quote would end a string literal, ``??/``
is a trigraph for a backslash under ``-std=c99``, ``%`` is a conversion when
the literal is a format. So C is never built from such text directly:

- :func:`c_string` makes it a string literal: every character but printable
  ASCII (and ``\\``, ``"``, ``?``, ``%``) becomes an escape, so the literal
  holds exactly the text's UTF-8 bytes and nothing else;
- :func:`c_format` does the same for a printf format an op wrote, leaving its
  ``%`` conversions alone (the text an op puts in it is numbers and names the
  op itself chose);
- :func:`c_comment` makes it text for a ``/* ... */`` comment: printable
  ASCII only, no ``*/`` or ``/*``, no ``??`` (trigraphs), no line breaks,
  and bounded in length. Comments are for people reading ``f.source``; the
  cache key ignores them (the renderer writes them with ``CWriter.comment``).
"""

import re

__all__ = ["c_string", "c_format", "c_comment"]

COMMENT_MAX = 200  # characters of user text kept in one comment

# Printable ASCII that a C string literal may hold as it is.
_PLAIN = frozenset(chr(c) for c in range(0x20, 0x7f)) - {"\\", '"', "?"}


def _literal(text, percent):
    out = []
    for byte in str(text).encode("utf-8", "surrogatepass"):
        ch = chr(byte)
        if ch == "%":
            out.append(percent)
        elif ch in _PLAIN:
            out.append(ch)
        elif ch in '\\"?':
            out.append("\\" + ch)  # \? : no trigraph can form
        else:
            out.append(f"\\{byte:03o}")  # always 3 digits: a following digit stays itself
    return '"' + "".join(out) + '"'


def c_string(text):
    """``text`` as a C string literal holding its UTF-8 bytes, safe as a printf format too.

    >>> print(c_string('a "b" ??/ 50% \\n'))
    "a \\"b\\" \\?\\?/ 50%% \\012"
    """
    return _literal(text, "%%")


def c_format(fmt):
    """A printf format an op wrote, as a C string literal: ``%`` kept, everything else escaped.

    >>> print(c_format("got %lld, not \\"%s\\""))
    "got %lld, not \\"%s\\""
    """
    return _literal(fmt, "%")


_TRIGRAPH = re.compile(r"\?(?=\?)")


def c_comment(text, limit=COMMENT_MAX):
    """``text`` made safe inside a ``/* ... */`` comment (one line, printable ASCII).

    Other characters show as ``\\xNN``/``\\uNNNN`` escapes, ``*/`` as ``* /``,
    ``/*`` as ``/ *``, ``??`` as ``? ?``; text past ``limit`` characters is cut
    and marked with ``...``.

    >>> c_comment('x */ system("id"); /* ??/ end')
    'x * / system("id"); / * ? ?/ end'
    """
    text = str(text)
    cut = len(text) > limit
    text = "".join(c if " " <= c <= "~" else _escape(c) for c in text[:limit])
    text = text.replace("*/", "* /").replace("/*", "/ *")
    text = _TRIGRAPH.sub("? ", text)
    # A trailing backslash or "?" could join with what the caller writes next.
    if text.endswith(("\\", "?", "*", "/")):
        text += " "
    return text + "..." * cut


def _escape(ch):
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 \
        else f"\\U{code:08x}"

r"""A griffe extension (mkdocs.yml: mkdocstrings' ``extensions``) that makes semid's docstrings read well as Markdown.

semid's docstrings follow the standard library's habit: runnable ``>>>`` examples in the text, often after an
RST ``Example::`` line. As Markdown, a ``>>>`` run is a paragraph (``[...]`` in its output even reads as a
link), so this extension fences each run as a ``pycon`` block and turns the RST ``::`` into ``:``.

Example::

    >>> fence_doctests("Sum.\n\nExample::\n\n    >>> 1 + 1\n    2\n").splitlines()
    ['Sum.', '', 'Example:', '', '```pycon', '>>> 1 + 1', '2', '```']
"""
from __future__ import annotations

from typing import Any

import griffe


def fence_doctests(text: str) -> str:
    """``text`` with every run of lines starting at a ``>>>`` and ending at a blank line fenced as ``pycon``
    (dedented to the run's first line) and RST's literal-block ``::`` at a line's end made a ``:``."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith(">>>"):
            indent = len(line) - len(stripped)
            run = []
            while i < len(lines) and lines[i].strip():
                run.append(lines[i][indent:] if lines[i][:indent].isspace() or indent == 0 else lines[i].lstrip())
                i += 1
            out += ["```pycon", *run, "```"]
            continue
        if line.endswith("::") and not line.endswith(":::"):
            line = line[:-1]
        out.append(line)
        i += 1
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


class DoctestFences(griffe.Extension):
    """Fence the doctests of every docstring griffe loads."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = fence_doctests(obj.docstring.value)

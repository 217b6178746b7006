"""The benchmarks page: BENCHMARKS.md as the docs site shows it, each section titled by what it measures.

BENCHMARKS.md is the lab record (sections are appended with the issue that asked for them); the page drops
the issue numbers from the titles, since a reader of the site has not seen the issues.

Example::

    >>> page = benchmarks_page("# Benchmarks\\n\\n## Scale: 1M items (issue 19)\\n\\n`semid bench scale`\\n")
    >>> "## Scale: 1M items\\n" in page, "issue" in page
    (True, False)
"""
from __future__ import annotations

import re

_ISSUE_IN_TITLE = re.compile(r"\s*\((?:issue|issues|#)\s*\d+[^)]*\)", re.IGNORECASE)


def benchmarks_page(text: str) -> str:
    """The page's Markdown, from BENCHMARKS.md's ``text``."""
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            line = _ISSUE_IN_TITLE.sub("", line).rstrip()
        out.append(line)
    title = 0 if out and out[0].startswith("# ") else None
    note = ["", "*Generated from the repository's BENCHMARKS.md by `semid docs generate`; each section names the "
            "command that measured it.*"]
    if title is None:
        out = ["# Benchmarks", *note, "", *out]
    else:
        out = [out[0], *note, *out[1:]]
    return "\n".join(out).rstrip() + "\n"

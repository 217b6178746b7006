"""JSON types every room shares: ``JsonValue`` / ``JsonObject`` for genuinely free-form JSON (a config as a dict,
a file read back).

Each record with a known shape (a ``TypedDict``) lives with the room that writes it: ``semid.rankers.records``
(a fit's results.json), ``semid.rqvae.records`` (Stage 1), ``semid.embeddings.records`` (Figure 4's lookups),
``semid.study.records`` (the regime map, the studies the experiment hands the report), ``semid.results.records``
(report.json), ``semid.serve.records`` and ``semid.bench.records``. A room reads only its own records and
those of the rooms below it (``semid.core.layers``).

Annotations only: nothing checks a record at run time, and the keys are exactly those the writers use.
Example::

    >>> from semid.core.records import JsonObject
    >>> cfg: JsonObject = {"name": "tiny", "seeds": [0, 1]}
    >>> cfg["seeds"]
    [0, 1]
"""
from __future__ import annotations

from typing import Union

JsonValue = Union[None, bool, int, float, str, list["JsonValue"], dict[str, "JsonValue"]]
JsonObject = dict[str, JsonValue]

"""The names ``semid bench lookups`` accepts: table layouts, id distributions and contenders.

Kept free of torch: every ``semid`` command builds the whole parser, and the bench parser's choices come
from here (importing torch for them cost each command ~1.5 s).

>>> from semid.bench.names import CONTENDERS, DEFAULT_CONTENDERS
>>> sorted(set(CONTENDERS) - set(DEFAULT_CONTENDERS))  # opt-in: the 2-process table-wise DMP
['torchrec_dmp_tw']
"""
from __future__ import annotations

LAYOUTS = ("hash", "unigram", "bigram", "spm", "history")
DISTRIBUTIONS = ("zipf", "uniform")
CONTENDERS = ("torchrec_fast", "torchrec_dmp", "torchrec_dmp_tw", "fbgemm_tbe", "eb_sgd", "eb_adagrad",
              "eb_sparseadam", "ceiling")
DEFAULT_CONTENDERS = tuple(c for c in CONTENDERS if c != "torchrec_dmp_tw")

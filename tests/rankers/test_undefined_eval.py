"""An evaluation day with no positives or no new items: the run finishes and says why a metric is undefined."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from semid.datamodules.corpus import CorpusWriter
from semid.cli import main
from tests.rankers.conftest import FAST


def _corpus(out: Path, *, n_items: int = 300, days: int = 4, per_day: int = 1500) -> Path:
    """Every item exists from day 0 (no new items later); nobody clicks on the last day."""
    rng = np.random.default_rng(0)
    with CorpusWriter(out, 8) as w:
        w.write_items(np.arange(n_items), rng.normal(size=(n_items, 8)), np.zeros(n_items, np.int32))
        for d in range(days):
            click = (rng.random(per_day) < 0.3).astype(np.int8) if d < days - 1 else np.zeros(per_day, np.int8)
            w.write_impressions(d, {"day": np.full(per_day, d), "user_id": rng.integers(0, 50, per_day),
                                    "watch_item_id": rng.integers(0, n_items, per_day),
                                    "item_id": rng.integers(0, n_items, per_day), "click": click,
                                    "engaged": click * (rng.random(per_day) < 0.5)})
        w.close({"source": "test"})
    return out


def test_no_positives_and_no_new_items_are_undefined_with_reasons(tmp_path, capsys):
    corpus, out = _corpus(tmp_path / "c"), tmp_path / "run"
    args = ["rank", "fit", "--representation", "hash_8k", "--corpus", str(corpus), "--out", str(out)]
    assert main(args + [x for o in FAST for x in ("--set", o)]) == 0
    printed = capsys.readouterr().out
    assert "overall undefined (no positives among 1500 impressions)" in printed
    assert "new undefined (no impressions of items introduced on the evaluation day" in printed
    ctr = json.loads((out / "results.json").read_text())["metrics"]["ctr"]
    assert ctr["overall"]["auc"] is None and ctr["overall"]["logloss"] > 0  # log loss is still defined
    assert ctr["new"]["impressions"] == 0 and ctr["new"]["auc"] is None
    # evaluating an earlier day of the same run gives numbers again
    assert main(["rank", "eval", str(out), "--day", "2"]) == 0
    assert "overall 0." in capsys.readouterr().out

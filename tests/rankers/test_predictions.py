"""A fit saves its evaluation-day predictions keyed by impression row: two runs on one corpus score the
same rows, and the saved scores reproduce the run's own AUC."""
from __future__ import annotations

import numpy as np

from semid.rankers.config import load_rank_config
from semid.rankers.fit import fit
from semid.rankers.predictions import read_predictions
from semid.results.paired import auc
from tests.rankers.conftest import FAST


def test_predictions_reproduce_the_run_auc_and_align_across_runs(signal_corpus, tmp_path) -> None:  # noqa: ANN001
    a = fit(load_rank_config(representation="hash_8k", overrides=FAST), signal_corpus, tmp_path / "a")
    b = fit(load_rank_config(representation="dense", overrides=FAST), signal_corpus, tmp_path / "b")
    day = a["eval_day"]
    pa_, pb = read_predictions(tmp_path / "a", day), read_predictions(tmp_path / "b", day)
    assert pa_.num_rows == a["metrics"]["ctr"]["overall"]["impressions"]
    assert np.array_equal(pa_["row"].to_numpy(), np.arange(pa_.num_rows))  # every impression once, in day order
    assert pa_["item_id"].equals(pb["item_id"]) and pa_["click"].equals(pb["click"])  # paired on the same rows
    for run, preds in ((a, pa_), (b, pb)):
        got = auc(preds["ctr_logit"].to_numpy().astype(np.float64), preds["click"].to_numpy())
        assert abs(got - run["metrics"]["ctr"]["overall"]["auc"]) < 1e-4
        new = preds["is_new"].to_numpy()
        got_new = auc(preds["ctr_logit"].to_numpy()[new].astype(np.float64), preds["click"].to_numpy()[new])
        # torchmetrics ranks float32 sigmoid probabilities, which tie where distinct logits round together
        assert abs(got_new - run["metrics"]["ctr"]["new"]["auc"]) < 1e-4
    assert a["predictions"] == {str(day): f"predictions/day={day:04d}"}


def test_an_in_process_fit_leaves_no_process_group_variables(signal_corpus, tmp_path) -> None:  # noqa: ANN001
    """Lightning sets MASTER_ADDR, LOCAL_RANK, ... for an in-process fit; a later subprocess must not inherit
    them (it would take itself for a rank of a launched job)."""
    import os

    keys = ("MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK", "NODE_RANK", "LOCAL_WORLD_SIZE")
    before = {k: os.environ.get(k) for k in keys}
    fit(load_rank_config(representation="hash_8k", overrides=FAST), signal_corpus, tmp_path / "r",
        max_train_days=1)
    assert {k: os.environ.get(k) for k in keys} == before

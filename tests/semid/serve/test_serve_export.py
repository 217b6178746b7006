"""Export -> score round trip: the artifact reproduces the training run's evaluation, fp32 exactly, int8 closely."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import torch

from semid.cli import main
from semid.serve.artifact import load_artifact
from semid.serve.parity import check_parity, reference_logits

from .conftest import FIT, one_line_error, run

# fp32: the exported ranker runs the same float32 ops on the same inputs as the training code's evaluation:
# bit-identical logits at the evaluation's batch size and thread count (measured max |Δ| 0.0 on tiny and small),
# within 2e-6 at other batch sizes (float32 matmul blocking differs), so a near-tie may swap and move an AUC by
# ~1e-6
LOGIT_TOL = 1e-5
AUC_TOL = 1e-5
# int8 row-wise tables: |Δ AUC| measured 1.5e-4 on this tiny run (2e-6 overall, 4e-5 on new items on `small`)
INT8_AUC_TOL = 2e-3


@pytest.fixture(scope="module")
def spm_reference(study):  # noqa: ANN001, ANN201
    return reference_logits(study.spm_run)


@pytest.mark.parametrize("name", ["spm", "hash"])
def test_score_file_reproduces_the_runs_evaluation_auc(study, name, tmp_path, capsys):  # noqa: ANN001
    run_dir, model = (study.spm_run, study.spm) if name == "spm" else (study.hash_run, study.hash)
    res = study.results(run_dir)
    day = res["eval_day"]
    run("requests", study.corpus, "--day", day, "--out", tmp_path / "r.parquet")
    run("score", model, "--requests", tmp_path / "r.parquet", "--out", tmp_path / "s.parquet",
        "--batch-size", 1000, "--json", tmp_path / "s.json")
    summary = json.loads((tmp_path / "s.json").read_text())
    out = pq.read_table(tmp_path / "s.parquet")
    assert out.num_rows == pq.read_metadata(tmp_path / "r.parquet").num_rows == res["metrics"]["ctr"]["overall"][
        "impressions"]
    assert set(out["status"].to_pylist()) == {"known"}
    assert {"user_id", "click", "ctr", "engaged", "ctr_logit", "engaged_logit"} <= set(out.column_names)
    assert abs(summary["ctr_auc_overall"] - res["metrics"]["ctr"]["overall"]["auc"]) <= AUC_TOL
    assert abs(summary["ctr_auc_new"] - res["metrics"]["ctr"]["new"]["auc"]) <= AUC_TOL
    if name == "spm":  # SID representations report each candidate's SID
        assert out.schema.field("sid").type.list_size == load_artifact(model).schema.levels


def test_fp32_export_scores_equal_the_training_codes_logits(study, spm_reference):  # noqa: ANN001
    r = check_parity(study.spm_run, study.spm, reference=spm_reference)
    assert r["impressions"] == len(spm_reference[0]) > 0
    assert max(r["max_abs_logit_diff"].values()) <= LOGIT_TOL
    for s in ("overall", "new"):
        a = r[f"ctr_auc_{s}"]
        # (`semid rank eval`'s re-evaluation itself may differ from the fit's own by ~2e-6 on a small slice)
        assert a["export"] is not None and abs(a["export"] - a["run"]) <= AUC_TOL
        assert abs(a["export"] - a["training_code"]) <= AUC_TOL


def test_int8_export_is_quantized_and_within_the_auc_tolerance(study, spm_reference):  # noqa: ANN001
    payload = torch.load(study.spm_int8 / "ranker.pt", weights_only=True)
    tables = [k for k in payload["state_dict"] if k.startswith("ebc.")]
    assert tables and all(payload["state_dict"][k].dtype == torch.uint8 for k in tables)
    assert type(load_artifact(study.spm_int8).model.ebc).__module__ == "torchrec.quant.embedding_modules"
    r = check_parity(study.spm_run, study.spm_int8, reference=spm_reference)
    assert 0 < max(r["max_abs_logit_diff"].values()) < 0.1  # quantized: close, not equal
    assert abs(r["ctr_auc_overall"]["export"] - r["ctr_auc_overall"]["run"]) <= INT8_AUC_TOL


def test_loading_and_scoring_need_no_lightning_nor_training_code(study):  # noqa: ANN001
    code = ("import sys, numpy as np\n"
            "from semid.serve import load_artifact, Scorer\n"
            "from semid.serve.bench import synthetic_requests\n"
            f"a = load_artifact({str(study.spm_int8)!r})\n"
            "s = Scorer(a).score(synthetic_requests(a, 8))\n"
            "assert s.logits.shape == (8, 2) and np.isfinite(s.logits).all()\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')\n"
            "       or m in ('semid.rankers.fit', 'semid.rankers.module', 'semid.rankers.strategy', 'semid.datamodules.ranking')]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_dense_input_run_exports_from_its_lightning_checkpoint(study, tmp_path):  # noqa: ANN001
    out = tmp_path / "dense-run"
    run("rank", "fit", "--representation", "dense", "--corpus", study.corpus, "--out", out, *FIT)
    run("export", out, "--out", tmp_path / "dense")
    a = load_artifact(tmp_path / "dense")
    assert a.cache is None and a.encoder is None and a.items.embedding is not None and a.schema.needs_content
    r = check_parity(out, a)
    assert max(r["max_abs_logit_diff"].values()) <= LOGIT_TOL
    assert abs(r["ctr_auc_overall"]["export"] - r["ctr_auc_overall"]["run"]) <= AUC_TOL


@pytest.mark.slow
@pytest.mark.distributed
def test_row_wise_shards_of_a_two_process_run_are_gathered(study, tmp_path):  # noqa: ANN001
    out = tmp_path / "rw"
    # a child process (Lightning launches the ranks by re-running the current command line), without the rank
    # variables the study's in-process fits left in this process's environment (MASTER_PORT, LOCAL_RANK, ...):
    # with them the child takes itself for rank 0 of a launched job and waits for a rank 1 that never comes
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK",
                                                            "LOCAL_WORLD_SIZE", "RANK", "WORLD_SIZE", "GROUP_RANK")}
    subprocess.run([sys.executable, "-m", "semid.cli", "rank", "fit", "--representation", "hash_8k", "--corpus",
                    str(study.corpus), "--out", str(out), *FIT, "--set", "trainer.devices=2",
                    "--set", "sharding.sharding_types=[row_wise]"], check=True, capture_output=True, timeout=900,
                   env=env)
    res = study.results(out)
    assert res["world_size"] == 2 and {p["sharding_type"] for p in res["sharding_plan"].values()} == {"row_wise"}
    shards = list((out / "checkpoints" / "last.ckpt").glob("*.distcp"))
    assert len(shards) == 2  # each rank wrote its own rows
    run("export", out, "--out", tmp_path / "rw-export")
    a = load_artifact(tmp_path / "rw-export")
    table = a.model.ebc.embedding_bags["hash_8k"].weight
    assert table.shape == (8192, 16) and not torch.equal(table[:4096], torch.zeros(4096, 16)) and \
        not torch.equal(table[4096:], torch.zeros(4096, 16))
    # the one-process evaluation of the 2-process checkpoint (DCP restores it under the 1-process plan)
    r = check_parity(out, a)
    assert max(r["max_abs_logit_diff"].values()) <= LOGIT_TOL
    # the run itself scored with DMP across two ranks (pooled sums add in another order)
    assert abs(r["ctr_auc_overall"]["export"] - res["metrics"]["ctr"]["overall"]["auc"]) <= 1e-4


def test_export_errors_are_one_line(study, tmp_path, capsys):  # noqa: ANN001
    capsys.readouterr()
    one_line_error(capsys, main(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "m")]), "no results.json")
    one_line_error(capsys, main(["export", str(study.hash_run), "--out", str(study.hash)]), "already exists")
    one_line_error(capsys, main(["export", str(study.spm_run), "--out", str(tmp_path / "m"), "--rqvae",
                                 str(tmp_path / "none")]), "does not exist")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "results.json").write_text(json.dumps({**study.results(study.hash_run), "metrics": None}))
    one_line_error(capsys, main(["export", str(unfinished), "--out", str(tmp_path / "m")]), "has not finished")
    mch = tmp_path / "mch"  # managed collisions: refused up front, not on the table shapes later
    mch.mkdir()
    (mch / "results.json").write_text(json.dumps({**study.results(study.hash_run), "representation_kind": "mch"}))
    one_line_error(capsys, main(["export", str(mch), "--out", str(tmp_path / "m")]), "managed-collision (mch)")
    assert not (tmp_path / "m").exists()

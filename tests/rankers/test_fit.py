"""End-to-end ranker training on the TorchRec path: learning, resuming, CLI, W&B, Dense Input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from semid.rankers.config import load_rank_config
from semid.rankers.fit import fit
from semid.rankers.model import RankerConfig
from semid.cli import main
from semid.core.errors import SemidError
from tests.rankers.conftest import FAST


def _tables(ckpt: Path) -> dict[str, torch.Tensor]:
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    out = ckpt.parent / f"{ckpt.name}.pt"
    dcp_to_torch_save(ckpt, out)
    state = torch.load(out, weights_only=False)["model"]
    return {k: v for k, v in state.items() if ".embedding_bags." in k}


def test_ranker_learns_the_planted_signal_through_fused_tables(signal_corpus, tmp_path):
    cfg = load_rank_config(representation="hash_8k", overrides=FAST)
    r = fit(cfg, signal_corpus, tmp_path / "run")
    ctr = r["metrics"]["ctr"]
    assert ctr["overall"]["auc"] > 0.62, ctr["overall"]
    assert r["table_rows"] == {"hash_8k": 8192}
    assert r["sharding_plan"]["hash_8k"]["compute_kernel"] == "fused"
    assert r["lookups_per_item"] == 1.0
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["metrics"]["ctr"]["new"]["auc"] == ctr["new"]["auc"]
    assert "ci_low" in saved["metrics"]["ctr"]["overall"]


def test_interrupted_run_resumes_bit_identically(signal_corpus, tmp_path):
    cfg = load_rank_config(representation="hash_8k", overrides=FAST + ["optim.lr_decay_per_day=0.5"])
    full = fit(cfg, signal_corpus, tmp_path / "full")
    part = fit(cfg, signal_corpus, tmp_path / "resumed", max_train_days=1)
    assert part["metrics"] is None and not (tmp_path / "resumed" / "results.json").exists()
    resumed = fit(cfg, signal_corpus, tmp_path / "resumed")
    assert resumed["metrics"]["ctr"] == full["metrics"]["ctr"]
    a, b = _tables(tmp_path / "full" / "checkpoints" / "last.ckpt"), _tables(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # a finished run with the same inputs is skipped, not retrained
    assert fit(cfg, signal_corpus, tmp_path / "resumed").get("skipped") is True


@pytest.mark.parametrize("config", ["hash_8k", "dense"])  # a sharded DCP checkpoint, and one Lightning file
def test_kill_9_mid_day_then_rerun_resumes_from_the_day_checkpoint(signal_corpus, tmp_path, config):
    """A real `semid rank fit` SIGKILLed in the middle of its second day (semid.core.kill_hook): the rerun resumes
    from the first day's checkpoint and ends with the uninterrupted run's metrics, tables and CSV log."""
    from semid.datamodules.corpus import Corpus

    def cmd(out):  # noqa: ANN001, ANN202
        return [sys.executable, "-m", "semid.cli", "rank", "fit", "--representation", config, "--corpus", str(signal_corpus),
                "--out", str(out)] + [x for o in FAST + ["trainer.log_every_n_steps=5"] for x in ("--set", o)]

    subprocess.run(cmd(tmp_path / "full"), check=True, capture_output=True, timeout=600)
    steps_per_day = -(-Corpus(signal_corpus).read_day(0).num_rows // 256)
    env = {**os.environ, "SEMID_TEST_KILL_AT_STEP": str(steps_per_day * 3 // 2)}
    killed = subprocess.run(cmd(tmp_path / "killed"), capture_output=True, timeout=600, env=env)
    assert killed.returncode == -signal.SIGKILL and not (tmp_path / "killed" / "results.json").exists()
    rerun = subprocess.run(cmd(tmp_path / "killed"), check=True, capture_output=True, text=True, timeout=600)
    assert f"saved at the end of a day, step {steps_per_day})" in rerun.stdout, rerun.stdout
    a, b = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("full", "killed"))
    assert a["metrics"] == b["metrics"] and a["metrics_by_day"] == b["metrics_by_day"]
    if config != "dense":
        ta, tb = (_tables(tmp_path / d / "checkpoints" / "last.ckpt") for d in ("full", "killed"))
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    logs = [(tmp_path / d / "csv" / "metrics.csv").read_text().splitlines() for d in ("full", "killed")]
    assert [r.split(",")[:2] for r in logs[0]] == [r.split(",")[:2] for r in logs[1]]  # no row lost or repeated


def test_checkpoint_of_another_config_is_not_resumed(signal_corpus, tmp_path):
    fit(load_rank_config(representation="hash_8k", overrides=FAST), signal_corpus, tmp_path / "r", max_train_days=1)
    with pytest.raises(SemidError, match="belongs to another run"):
        fit(load_rank_config(representation="hash_8k", overrides=FAST + ["optim.dense_lr=0.01"]), signal_corpus, tmp_path / "r")


def test_cli_fit_eval_and_wandb_offline_agree(signal_corpus, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["rank", "fit", "--config", "conf/ranker/base.yaml", "--representation", "conf/embeddings/hash_8k.yaml", "--corpus", str(signal_corpus), "--out", str(out)]
    for o in FAST:
        args += ["--set", o]
    args += ["--set", "trainer.loggers=[csv,wandb]"]
    assert main(args) == 0
    assert "CTR AUC overall" in capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    auc = res["metrics"]["ctr"]["overall"]["auc"]
    run_dir = next((out / "wandb").glob("offline-run-*"))
    summary = json.loads(subprocess.run([str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--summary",
                                         "--json", str(run_dir)], capture_output=True, text=True, check=True).stdout)
    assert abs(summary["summary"]["eval/ctr_auc/overall"] - auc) < 1e-9
    assert abs(summary["summary"]["eval/ctr_auc/new"] - res["metrics"]["ctr"]["new"]["auc"]) < 1e-9
    assert main(["rank", "eval", str(out), "--json", str(tmp_path / "e.json")]) == 0
    again = json.loads((tmp_path / "e.json").read_text())
    assert abs(again["metrics"]["ctr"]["overall"]["auc"] - auc) < 1e-9


def test_dense_input_trains_without_tables(signal_corpus, tmp_path):
    r = fit(load_rank_config("dense_2x", FAST), signal_corpus, tmp_path / "dense")
    assert r["table_rows"] == {} and r["representation_kind"] == "dense"
    assert r["metrics"]["ctr"]["overall"]["auc"] > 0.55
    assert r["config"]["ranker"]["depth_multiplier"] == 2.0


def test_depth_multiplier_adds_layers():
    assert RankerConfig(hidden=[128, 64]).layer_widths() == [128, 64]
    assert RankerConfig(hidden=[128, 64], depth_multiplier=1.5).layer_widths() == [128, 64, 64]
    assert RankerConfig(hidden=[128, 64], depth_multiplier=2).layer_widths() == [128, 64, 64, 64]


def test_config_typos_are_rejected():
    with pytest.raises(SemidError, match=r"unknown key\(s\) lr .*valid: .*dense_lr"):
        load_rank_config(representation="hash_8k", overrides=["optim.lr=0.1"])


def test_a_save_interrupted_between_renames_is_recovered(signal_corpus, tmp_path):
    cfg = load_rank_config(representation="hash_8k", overrides=FAST)
    fit(cfg, signal_corpus, tmp_path / "r", max_train_days=1)
    ckpts = tmp_path / "r" / "checkpoints"
    (ckpts / "last.ckpt").rename(ckpts / ".last.ckpt.old-dcp")  # the state a kill mid-save leaves
    (ckpts / ".last.ckpt.tmp-dcp").mkdir()  # and a half-written new one
    r = fit(cfg, signal_corpus, tmp_path / "r")
    full = fit(cfg, signal_corpus, tmp_path / "full")
    assert r["metrics"]["ctr"] == full["metrics"]["ctr"]

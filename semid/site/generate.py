"""What ``semid docs generate`` writes: the pages made from the code (CLI and configuration reference), the
benchmarks page (from BENCHMARKS.md) and, when given experiment directories, the results pages.

Example::

    >>> import tempfile
    >>> from pathlib import Path
    >>> docs = Path(tempfile.mkdtemp())
    >>> pages = {"reference/demo.md": "# Demo\\n"}
    >>> [p.name for p in write_pages(pages, docs)]
    ['demo.md']
    >>> stale_pages(pages, docs), write_pages(pages, docs)
    ([], [])
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from semid.core.artifacts import atomic_path, read_json
from semid.core.config import CONF_DIR
from semid.core.errors import SemidError
from semid.site.api_pages import API_DIR, api_pages
from semid.site.benchmarks_page import benchmarks_page
from semid.site.cli_reference import CLI_DIR, cli_pages
from semid.site.config_reference import config_page
from semid.site.results_pages import RESULT_PAGES, regimes_page, study_page

REPO_ROOT = CONF_DIR.parent  # the checkout: conf/, BENCHMARKS.md and docs/ sit side by side
DOCS_DIR = REPO_ROOT / "docs"
# figures an experiment writes under <out>/figures/ that a results page shows
FIGURES = ("improvement.png", "lookups_per_item.png", "regime_map.png")

Page = str | bytes
GENERATED_DIRS = (CLI_DIR, API_DIR)  # folders whose every page is generated: a page nobody makes is removed


def generated_pages(root: Path = REPO_ROOT) -> dict[str, Page]:
    """The pages made from the code and BENCHMARKS.md, keyed by their path under ``docs/``. They are committed,
    and ``tests/semid/site/test_generated_up_to_date.py`` fails when one differs from what the code makes now."""
    pages: dict[str, Page] = {**cli_pages(), **api_pages()}
    pages["reference/config.md"] = config_page()
    pages["benchmarks.md"] = benchmarks_page((root / "BENCHMARKS.md").read_text())
    return pages


def parse_results_arg(value: str) -> tuple[str, Path]:
    """``PAGE=DIR`` of ``--results`` -> (page slug, experiment directory), refused in one line when the page is
    unknown or the directory has no report."""
    page, sep, where = value.partition("=")
    if not sep or not where:
        raise SemidError(f"--results {value}: expected PAGE=DIR, e.g. small-study=runs/experiment-small-full")
    if page not in RESULT_PAGES:
        raise SemidError(f"--results {value}: unknown page '{page}' (valid: {', '.join(RESULT_PAGES)})")
    path = Path(where)
    report = path / "report.json"
    if not report.is_file():
        raise SemidError(f"--results {value}: {report} is missing (give the --out of a finished "
                         f"`{RESULT_PAGES[page].preset}`)")
    return page, path


def results_pages(runs: dict[str, Path]) -> dict[str, Page]:
    """slug -> experiment directory  =>  ``results/<slug>.md`` and its figures in ``results/<slug>/``.
    Every report is read and checked before any page is made, so a bad one leaves nothing written."""
    reports = {}
    for slug, run in runs.items():
        report = read_json(run / "report.json")
        is_regimes = "cells" in report
        want = RESULT_PAGES[slug].kind
        if (want == "regimes") != is_regimes:
            found = "a regime map's" if is_regimes else "a study's"
            raise SemidError(f"--results {slug}={run}: {run}/report.json is {found} report, but page '{slug}' is made "
                             f"from {'a regime map' if want == 'regimes' else 'a study'} (`{RESULT_PAGES[slug].preset}`)")
        # a report that names its experiment must be the page's (an older study report names none: rendered as is)
        name = report.get("experiment") or report.get("name")
        if name is not None and name != RESULT_PAGES[slug].experiment:
            raise SemidError(f"--results {slug}={run}: {run}/report.json is experiment '{name}', but page '{slug}' is "
                             f"made from '{RESULT_PAGES[slug].experiment}' (`{RESULT_PAGES[slug].preset}`); pass "
                             "that run's directory")
        reports[slug] = report
    pages: dict[str, Page] = {}
    for slug, report in reports.items():
        run = runs[slug]
        written = dt.datetime.fromtimestamp((run / "report.json").stat().st_mtime, dt.timezone.utc)
        source = f"`{run.name}/report.json` (written {written:%Y-%m-%d %H:%M} UTC)"
        figures = tuple(f for f in FIGURES if (run / "figures" / f).is_file())
        for f in figures:
            pages[f"results/{slug}/{f}"] = (run / "figures" / f).read_bytes()
        render = regimes_page if RESULT_PAGES[slug].kind == "regimes" else study_page
        pages[f"results/{slug}.md"] = render(report, RESULT_PAGES[slug].title, source, slug, figures)
    return pages


def _same(path: Path, content: Page) -> bool:
    if not path.is_file():
        return False
    return path.read_bytes() == (content if isinstance(content, bytes) else content.encode())


def stale_pages(pages: dict[str, Page], docs: Path = DOCS_DIR) -> list[str]:
    """The pages of ``pages`` that ``docs`` lacks or holds with other content, and the CLI pages ``docs`` holds
    that the parsers no longer make (a removed command), and likewise for the API pages (a removed room)."""
    stale = [rel for rel, content in sorted(pages.items()) if not _same(docs / rel, content)]
    for folder in GENERATED_DIRS:
        if any(rel.startswith(folder + "/") for rel in pages):
            stale += sorted(str(p.relative_to(docs)) for p in (docs / folder).glob("*.md")
                            if str(p.relative_to(docs)) not in pages)
    return stale


def write_pages(pages: dict[str, Page], docs: Path = DOCS_DIR) -> list[Path]:
    """Write the pages that changed (each atomically) and remove generated pages nothing makes any more (a command or room that is gone); returns
    the paths written or removed."""
    changed = []
    for rel in stale_pages(pages, docs):
        path = docs / rel
        if rel not in pages:
            path.unlink()
            changed.append(path)
            continue
        content = pages[rel]
        with atomic_path(path) as tmp:
            tmp.write_bytes(content) if isinstance(content, bytes) else tmp.write_text(content)
        changed.append(path)
    return changed

"""The docs site's generators: the CLI and configuration reference from the code, the benchmarks page from
BENCHMARKS.md, and the results pages from an experiment's ``report.json`` (``semid docs generate``)."""
from __future__ import annotations

from semid.core.lazy import lazy_getattr

__getattr__ = lazy_getattr(__name__, {
    "cli_pages": "semid.site.cli_reference",
    "config_page": "semid.site.config_reference",
    "benchmarks_page": "semid.site.benchmarks_page",
    "study_page": "semid.site.results_pages",
    "regimes_page": "semid.site.results_pages",
    "RESULT_PAGES": "semid.site.results_pages",
    "generated_pages": "semid.site.generate",
    "write_pages": "semid.site.generate",
    "stale_pages": "semid.site.generate",
})
__all__ = ["cli_pages", "config_page", "benchmarks_page", "study_page", "regimes_page", "RESULT_PAGES",
           "generated_pages", "write_pages", "stale_pages"]

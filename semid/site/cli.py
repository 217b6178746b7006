"""``semid docs generate``: regenerate the docs site's generated pages (CLI and configuration reference,
benchmarks, and the results pages of the experiment directories given with ``--results``)."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    docs = sub.add_parser("docs", help="the documentation site: regenerate its generated pages")
    dsub = docs.add_subparsers(dest="docs_command", required=True, metavar="ACTION")
    p = dsub.add_parser("generate", help="write the CLI reference, the configuration reference and the benchmarks "
                        "page into docs/ (only the pages that changed), and results pages from experiment directories",
                        description="Regenerate the docs site's generated pages. The reference pages come from the "
                        "argparse parsers and the config dataclasses, the benchmarks page from BENCHMARKS.md, and each "
                        "--results PAGE=DIR renders docs/results/PAGE.md from DIR/report.json. Then `mkdocs build "
                        "--strict` builds the site.")
    p.add_argument("--docs", type=Path, default=None, help="the docs folder to write (default: the checkout's docs/)")
    p.add_argument("--results", action="append", default=[], metavar="PAGE=DIR",
                   help="render results page PAGE (small-study, movielens-1m, regime-map, quantizer-study) from the "
                   "experiment directory DIR (its report.json and figures/); repeatable")
    p.add_argument("--check", action="store_true",
                   help="write nothing; list the generated pages that are out of date and exit 1 if any")
    p.set_defaults(func=_generate)


def _generate(args: argparse.Namespace) -> int:
    from semid.site.generate import DOCS_DIR, generated_pages, parse_results_arg, results_pages, stale_pages, \
        write_pages

    runs = dict(parse_results_arg(v) for v in args.results)  # every argument is checked before any work
    docs = args.docs or DOCS_DIR
    pages = {**generated_pages(), **results_pages(runs)}
    if args.check:
        stale = stale_pages(pages, docs)
        for rel in stale:
            print(f"out of date: {docs / rel}")
        if stale:
            print("run `semid docs generate` and commit the pages")
        return 1 if stale else 0
    changed = write_pages(pages, docs)
    for path in changed:
        print(f"wrote {path}" if path.exists() else f"removed {path}")
    print(f"{len(changed)} of {len(pages)} generated pages changed in {docs}")
    return 0

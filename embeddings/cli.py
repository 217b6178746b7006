"""``semid spm report`` (Figure 4: lookups per item vs table size) and ``semid tokens build|info``."""
from __future__ import annotations

import argparse
import re
import warnings
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    spm = sub.add_parser("spm", help="SentencePiece over SIDs: lookup statistics")
    ssub = spm.add_subparsers(dest="spm_command", required=True, metavar="ACTION")
    p = ssub.add_parser("report", help="embedding lookups per item vs table size, SPM vs N-gram, by popularity "
                                       "(the paper's Figure 4): table, JSON and PNG")
    p.add_argument("--sids", type=Path, required=True, help="SID table (sids.parquet from `semid sids assign`)")
    p.add_argument("--corpus", type=Path, required=True, help="corpus directory (for impressions per item)")
    p.add_argument("--days", help="days whose impressions train SPM and define popularity, e.g. 0-18 "
                                  "(default: all)")
    p.add_argument("--vocab-sizes", default=",".join(str(v) for v in _default_sizes()),
                   help="comma-separated SPM vocabulary sizes (default: %(default)s)")
    p.add_argument("--hash-rows", type=int, default=8192, help="rows of the hashing baseline (default 8192)")
    p.add_argument("--out", type=Path, default=Path("reports/spm"), help="output directory (default: %(default)s)")
    p.set_defaults(func=_spm_report)

    tok = sub.add_parser("tokens", help="per-item token caches for a representation")
    tsub = tok.add_subparsers(dest="tokens_command", required=True, metavar="ACTION")
    p = tsub.add_parser("build", help="tokenise every corpus item once into a cache (.npz)")
    p.add_argument("--representation",
                   help="preset in conf/embeddings/ (e.g. spm_8k, bigram, hash_8k) or a YAML file")
    p.add_argument("--corpus", type=Path, required=True, help="corpus directory (items, and impressions for SPM)")
    p.add_argument("--sids", type=Path, help="SID table (needed by every SID representation)")
    p.add_argument("--days", help="days whose impressions train SPM, e.g. 0-18 (default: all)")
    p.add_argument("--extend", type=Path, metavar="CACHE",
                   help="instead of fitting anew, add the corpus items missing from this cache (frozen SIDs)")
    p.add_argument("--out", type=Path, required=True, help="cache file to write (.npz)")
    p.set_defaults(func=_tokens_build)
    p = tsub.add_parser("info", help="describe a token cache")
    p.add_argument("cache", type=Path)
    p.add_argument("--sids", type=Path, help="also check the cache against this SID table")
    p.set_defaults(func=_tokens_info)


def _default_sizes() -> tuple[int, ...]:
    from semid.embeddings.lookup_stats import DEFAULT_VOCAB_SIZES

    return DEFAULT_VOCAB_SIZES


def _parse_days(text: str | None) -> list[int] | None:
    from semid.core.errors import SemidError

    if text is None:
        return None
    days: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise SemidError(f"--days {text!r}: expected days like 0-18 or 0,1,5")
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        days += range(a, b + 1)
    return sorted(set(days))


def _parse_sizes(text: str) -> list[int]:
    from semid.core.errors import SemidError

    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SemidError(f"--vocab-sizes {text!r}: expected comma-separated integers, e.g. 1024,8192") from None
    if not sizes or min(sizes) < 2:
        raise SemidError(f"--vocab-sizes {text!r}: give at least one size >= 2")
    return sizes


def _spm_report(args: argparse.Namespace) -> int:
    from semid.datamodules import corpus_impressions, open_corpus
    from semid.embeddings.lookup_stats import lookup_report, plot_report, render_report
    from semid.core.artifacts import write_json
    from semid.rqvae import read_sid_table

    sizes = _parse_sizes(args.vocab_sizes)
    sids = read_sid_table(args.sids)
    corpus = open_corpus(args.corpus)
    impressions = corpus_impressions(corpus, sids.item_id, _parse_days(args.days))
    report = lookup_report(sids, sids.item_id, impressions, sizes, hash_rows=args.hash_rows)
    report.update(corpus=str(args.corpus), sids_path=str(args.sids), days=args.days or "all")
    render_report(report)
    for w in report["warnings"]:
        print(f"warning: {w}")
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "lookups.json", report)
    png = plot_report(report, args.out / "lookups.png")
    print(f"wrote {args.out / 'lookups.json'} and {png}")
    return 0


def _tokens_build(args: argparse.Namespace) -> int:
    from semid.datamodules import corpus_impressions, open_corpus
    from semid.embeddings.registry import load_representation_config
    from semid.embeddings.token_cache import TokenCache, build_token_cache
    from semid.core.errors import SemidError
    from semid.rqvae import read_sid_table

    if (args.representation is None) == (args.extend is None):
        raise SemidError("give either --representation (fit a new cache) or --extend CACHE (grow an existing one)")
    sids = read_sid_table(args.sids) if args.sids else None
    corpus = open_corpus(args.corpus)
    ids = corpus.read_item_ids()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if args.extend:
            old = TokenCache.load(args.extend, sids)
            cache = old.extend(ids, sids)
            print(f"extended {args.extend} ({len(old):,} items) by {len(cache) - len(old):,} new items")
        else:
            cfg = load_representation_config(args.representation)
            impressions = corpus_impressions(corpus, ids, _parse_days(args.days)) if cfg.kind in ("spm", "hybrid") \
                else None
            cache = build_token_cache(cfg, sids, ids, impressions)
    for w in caught:
        print(f"warning: {w.message}")
    cache.save(args.out)
    _describe(cache)
    print(f"wrote {args.out} (fingerprint {cache.fingerprint})")
    return 0


def _tokens_info(args: argparse.Namespace) -> int:
    from semid.embeddings.token_cache import TokenCache
    from semid.rqvae import read_sid_table

    sids = read_sid_table(args.sids) if args.sids else None
    cache = TokenCache.load(args.cache, sids)
    _describe(cache)
    if sids is not None:
        print(f"consistent with {args.sids} (SID space {sids.space_fingerprint})")
    return 0


def _describe(cache: object) -> None:
    from semid.embeddings.token_cache import TokenCache

    assert isinstance(cache, TokenCache)
    per_item = cache.lookups_per_item()
    print(f"representation '{cache.name}' ({cache.kind}): {len(cache):,} items, "
          f"{per_item.mean() if len(per_item) else 0:.2f} lookups per item")
    for t in cache.tables:
        print(f"  table {t.name}: {t.num_rows:,} rows")
    spm = cache.tokenizer.meta()
    if spm:
        print(f"  learned: {spm}")

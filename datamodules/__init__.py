"""Corpus format, synthetic generator, MovieLens import and Lightning DataModules."""
from datamodules.corpus import Corpus, CorpusWriter, Items
from datamodules.validate import validate_corpus

__all__ = ["Corpus", "CorpusWriter", "Items", "validate_corpus"]

"""Benchmarks: ``semid bench lookups`` (embedding lookups, lookups.py) and ``semid bench pipeline`` (stages,
pipeline.py). Every comparison is a ratio measured within one run (timing.py)."""

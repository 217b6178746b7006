"""Benchmarks: ``semid bench lookups`` (embedding lookups, lookups.py), ``semid bench pipeline`` (stages,
pipeline.py), ``semid bench scale`` (every stage at several corpus sizes: time, peak memory, growth exponents,
scale.py) and ``semid bench gpu`` (the checks that need a CUDA device, gpu.py; ``scripts/gpu-check.sh``).
Every comparison is a ratio measured within one run (timing.py)."""

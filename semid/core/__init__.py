"""The bottom layer: what every room needs and nothing project-specific above it.

Errors, config loading and merging, atomic artifact writes, fingerprints, sorted-id lookups, progress
bars, library-chatter silencing, CSV-log continuation, the test kill hook and lazy package exports.
Imports nothing of the project above it (checked by ``tests/semid/core/test_layers.py`` against ``semid.core.layers``).
"""

"""Ranker test settings: small, fast fits (the signal_corpus fixture is in tests/conftest.py)."""
FAST = ["trainer.threads=1", "trainer.num_bootstraps=20", "trainer.loggers=[csv]", "data.batch_size=256",
        "ranker.hidden=[64,32]", "ranker.embedding_dim=16"]

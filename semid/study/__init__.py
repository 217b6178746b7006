"""The study: the experiment runner, regime maps, launchers and the warm-start forkserver."""

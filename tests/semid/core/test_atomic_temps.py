"""Every atomic writer clears the temporary siblings that a killed writer left, and only those."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from semid.core.artifacts import _tmp_sibling, write_json


def test_a_dead_writers_temp_is_removed_and_a_live_ones_kept(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    # a writer that died: its pid no longer exists
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = _tmp_sibling(target).with_name(_tmp_sibling(target).name.replace(f"-{os.getpid()}-",
                                                                               f"-{dead.stdout.strip()}-"))
    stale.write_text("half")
    live = _tmp_sibling(target)  # this process: alive
    live.write_text("in progress")
    foreign = target.with_name(f".{target.name}.tmp-otherhost-1-abcd1234")  # another host: not ours to judge
    foreign.write_text("?")
    write_json(target, {"ok": True})
    assert target.exists() and not stale.exists() and live.exists() and foreign.exists()

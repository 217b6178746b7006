"""An --out that cannot be written (a parent that is a file, no permission) is one line and exit 2 for
every command, before any work."""
from __future__ import annotations

from pathlib import Path

import pytest

from semid.cli import main


@pytest.mark.parametrize("args", [
    ["data", "synth", "--preset", "tiny"],
    ["sids", "train", "--corpus", "{corpus}", "--config", "tiny"],
    ["rank", "fit", "--representation", "hash_8k", "--corpus", "{corpus}"],
    ["experiment", "--preset", "tiny"],
    ["data", "stats", "{corpus}", "--json"],
])
def test_an_out_under_a_file_is_refused_in_one_line(args: list[str], tiny_corpus: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    argv = [a.replace("{corpus}", str(tiny_corpus)) for a in args]
    argv += [str(blocker / "x.json")] if argv[-1] == "--json" else ["--out", str(blocker / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{blocker}/" in err[0] and f"{blocker} is a file, not a directory" in err[0]

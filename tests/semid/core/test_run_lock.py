"""semid.core.run_lock: one process per run directory; an --out that is a file is one line before any work."""
from __future__ import annotations

import pytest

from semid.cli import main
from semid.core.errors import SemidError
from semid.core.run_lock import LOCK_NAME, exclusive


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path) -> None:
    with exclusive(tmp_path / "run", "semid rank fit"):
        with pytest.raises(SemidError, match=r"another semid rank fit \(pid \d+\) is writing this directory"):
            with exclusive(tmp_path / "run", "semid rank fit"):
                pass
    with exclusive(tmp_path / "run", "semid rank fit"):  # released at the end of the block
        assert (tmp_path / "run" / LOCK_NAME).exists()


def test_an_out_that_is_a_file_is_one_line(tmp_path, capsys) -> None:
    out = tmp_path / "taken"
    out.write_text("a user's file\n")
    rc = main(["rank", "fit", "--representation", "hash_8k", "--corpus", str(tmp_path / "corpus"), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [f"semid: error: {out}: is a file, not a directory (choose another --out)"]
    assert out.read_text() == "a user's file\n"

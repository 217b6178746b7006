"""The public surface (issue 30 item 4): ``semid.__all__`` and ``semid.api`` list the same names, each importable
from ``semid`` without importing torch up front, each with a docstring whose example runs; and the README's
Python block runs as written."""
from __future__ import annotations

import doctest
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import semid

ROOT = Path(__file__).resolve().parents[2]


def test_importing_semid_does_not_import_torch() -> None:
    out = subprocess.run([sys.executable, "-c", "import sys, semid; print('torch' in sys.modules)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_semid_and_semid_api_export_the_same_names_from_the_same_places() -> None:
    import semid.api as api

    assert sorted(semid.__all__) == sorted(api.__all__)
    for name in api.__all__:
        assert getattr(semid, name) is getattr(api, name), name
        assert getattr(importlib.import_module(api.SOURCES[name]), name) is getattr(api, name), name


@pytest.mark.parametrize("name", [n for n in semid.__all__ if n != "__version__"])
def test_every_public_name_has_a_runnable_example(name: str) -> None:
    obj = getattr(semid, name)
    assert obj.__doc__ and ">>>" in obj.__doc__, f"semid.{name} has no example in its docstring"
    module = sys.modules[obj.__module__]
    finder, runner = doctest.DocTestFinder(recurse=False), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(obj, name, module=module, globs=dict(vars(module))):
        runner.run(test)
    assert runner.failures == 0 and runner.tries > 0, f"semid.{name}'s example failed (run it with doctest -v)"


def _readme_python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_readme_python_block_runs_as_written(tmp_path: Path) -> None:
    blocks = _readme_python_blocks()
    assert blocks, "README.md has no Python block"
    for i, code in enumerate(blocks):
        assert len(code.strip().splitlines()) <= 20, f"README block {i} is longer than 20 lines"
        script = tmp_path / f"readme_{i}.py"
        script.write_text(code)
        run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]

"""The layer check, in the project (CI runs it): no import in semid's source runs back up the layer map of
``semid.core.layers``, the map the code fingerprint reads too."""
from __future__ import annotations

import ast
from pathlib import Path

from semid.core.layers import LAYERS, Room, rank, room_of_module

ROOT = Path(__file__).resolve().parents[3]


def _module_files() -> list[tuple[Room, Path]]:
    """Every source file with the room it belongs to (the deepest room folder that holds it)."""
    out = []
    for room in LAYERS:
        top = ROOT / room.folder
        inner = [ROOT / r.folder for r in LAYERS if r != room and (ROOT / r.folder).is_relative_to(top)]
        out += [(room, f) for f in sorted(top.rglob("*.py")) if not any(f.is_relative_to(d) for d in inner)]
    return out


def upward_imports() -> list[str]:
    bad = []
    for me, f in _module_files():
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # `from semid import x` imports the submodule semid.x where one exists
                names = [f"{node.module}.{a.name}" for a in node.names] if node.module == "semid" else [node.module]
            else:
                continue
            for n in names:
                other = room_of_module(n)
                if other is not None and rank(other) > rank(me):
                    bad.append(f"{f.relative_to(ROOT)}:{node.lineno}: {me.package} imports {n} ({other.package})")
    return bad


def test_no_import_runs_back_up_the_layers() -> None:
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path: Path, monkeypatch) -> None:
    """It can fail: a datamodules file importing the rankers is reported."""
    import tests.semid.core.test_layers as me

    (tmp_path / "datamodules").mkdir()
    (tmp_path / "datamodules" / "bad.py").write_text("from semid.rankers import fit\nimport semid.core.errors\n")
    monkeypatch.setattr(me, "ROOT", tmp_path)
    assert me.upward_imports() == ["datamodules/bad.py:1: semid.datamodules imports semid.rankers (semid.rankers)"]


def test_every_room_folder_is_a_package_under_semid() -> None:
    for room in LAYERS:
        assert (ROOT / room.folder / "__init__.py").is_file(), room

"""The layer map, written once: semid's rooms from the lowest up, with the import name and the folder of each.

A lower room never imports a higher one (``tests/semid/core/test_layers.py`` checks every import in the tree), and
a stage's code fingerprint is the digest of its rooms' source (``semid.core.fingerprint``). Both read this map.
The repository keeps the design card's top-level folders; setup.cfg's ``package_dir`` installs them under ``semid``.
"""
from __future__ import annotations

from typing import NamedTuple


class Room(NamedTuple):
    name: str  # the fingerprint's name for the room
    package: str  # its import name
    folder: str  # its folder, relative to the repository root


# lowest first; "app" is the rest of semid (the CLI, the study, the results, serving, benchmarks)
LAYERS: tuple[Room, ...] = (
    Room("core", "semid.core", "semid/core"),
    Room("datamodules", "semid.datamodules", "datamodules"),
    Room("rqvae", "semid.rqvae", "semid/rqvae"),
    Room("embeddings", "semid.embeddings", "embeddings"),
    Room("rankers", "semid.rankers", "rankers"),
    Room("app", "semid", "semid"),
)
ROOMS: tuple[str, ...] = tuple(r.name for r in LAYERS)


def room_of_module(module: str) -> Room | None:
    """The room an import name belongs to (the longest matching package), or None for a module outside semid."""
    best = None
    for r in LAYERS:
        if (module == r.package or module.startswith(r.package + ".")) and (best is None or len(r.package) > len(best.package)):
            best = r
    return best


def rank(room: Room) -> int:
    """Its height: a room may import only rooms of the same or a lower rank."""
    return LAYERS.index(room)

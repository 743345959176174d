"""The home directory layout (``~/.stack/emulator``): images, snapshots, checkpoints, run, locks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .images import ImageStore
from .ports import PortAllocator
from .snapshot import SnapshotStore


@dataclass(frozen=True)
class Home:
    root: Path

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    @property
    def checkpoints(self) -> Path:
        """Snapshots derived from a snapshot by a user's seeding code (checkpoint.py)."""
        return self.root / "checkpoints"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    def image_store(self) -> ImageStore:
        return ImageStore(self.images, self.locks)

    def snapshot_store(self) -> SnapshotStore:
        return SnapshotStore(self.snapshots)

    def checkpoint_store(self) -> SnapshotStore:
        return SnapshotStore(self.checkpoints)

    def allocator(self, base_port: int, base_option: str = "--stack-emulator-base-port") -> PortAllocator:
        return PortAllocator(self.root, base=base_port, base_option=base_option)

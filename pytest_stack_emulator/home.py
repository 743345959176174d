"""The home directory layout (``~/.stack/emulator``): images, snapshots, checkpoints, run, locks."""

from __future__ import annotations

import contextlib
import stat
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
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

    def ensure(self) -> None:
        """Create the home (mode 0700) and its run directory (0700: it holds the VMs' sockets,
        disks and keys). A home that anyone may write to is refused: another user could replace
        its images or snapshots."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        mode = self.root.stat().st_mode
        if mode & stat.S_IWOTH:
            raise ConfigError(
                f"the stack-emulator home {self.root} is world-writable (mode {stat.S_IMODE(mode):04o}): "
                f"another user could replace its images or snapshots. Run `chmod o-w {self.root}`, or "
                "choose another directory with --stack-emulator-home (or STACK_EMULATOR_HOME)."
            )
        self.run.mkdir(exist_ok=True, mode=0o700)
        with contextlib.suppress(PermissionError):  # another user's run directory: left as it is
            self.run.chmod(0o700)

    def image_store(self) -> ImageStore:
        return ImageStore(self.images, self.locks)

    def snapshot_store(self) -> SnapshotStore:
        return SnapshotStore(self.snapshots)

    def checkpoint_store(self) -> SnapshotStore:
        return SnapshotStore(self.checkpoints)

    def allocator(self, base_port: int, base_option: str = "--stack-emulator-base-port") -> PortAllocator:
        return PortAllocator(self.root, base=base_port, base_option=base_option)

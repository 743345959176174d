"""The core, in one import: prepare an image and a snapshot once, start a stack per worker, stop it.

No pytest here. :func:`prepare` gets the image and the snapshot under file locks;
:func:`start` gives one worker its VM (resume, or cold boot as a fallback) and returns an
:class:`Instance` whose :attr:`Instance.handle` is what tests see.

This module only re-exports; each name lives in the module that owns it:
:mod:`.handle`, :mod:`.home`, :mod:`.host`, :mod:`.prepare`, :mod:`.vm`,
:mod:`.lifecycle`, :mod:`.guest` and :mod:`.reap`.
"""

from __future__ import annotations

from .guest import rotate_keys, set_cold_boot_clock, share_host_dir, write_internal_pck
from .handle import ACCESS_TYPES, StackEmulator
from .home import Home
from .host import HostInfo, probe_host
from .lifecycle import Instance, new_session_id, start, stop_all
from .log import Warn
from .prepare import Prepared, capture_snapshot, prepare, snapshot_key
from .reap import list_vms, reap
from .vm import cold_guest_ports

__all__ = [
    "ACCESS_TYPES",
    "Home",
    "HostInfo",
    "Instance",
    "Prepared",
    "StackEmulator",
    "Warn",
    "capture_snapshot",
    "cold_guest_ports",
    "list_vms",
    "new_session_id",
    "prepare",
    "probe_host",
    "reap",
    "rotate_keys",
    "set_cold_boot_clock",
    "share_host_dir",
    "snapshot_key",
    "start",
    "stop_all",
    "write_internal_pck",
]

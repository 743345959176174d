"""pytest-stack-emulator: a whole Stack Auth backend stack per test worker, in a QEMU VM.

The core works without pytest::

    from pytest_stack_emulator import config, emulator
    prepared = emulator.prepare(config.resolve({"image": "compat"}, {}))
    instance = emulator.start(prepared)
    ...
    instance.stop()
"""

from .emulator import Instance, Prepared, StackEmulator, prepare, start, stop_all

__all__ = ["Instance", "Prepared", "StackEmulator", "prepare", "start", "stop_all"]

"""The one loader of BullMQ's Lua scripts: the files the installed bullmq package ships.

errand runs some of BullMQ's own scripts directly (the fast engine's moveToActive and
friends, the shutdown hand-back's moveJobFromActiveToWait), so a job they move is the
same job, in the same keys, that BullMQ's Worker would move.
"""

from __future__ import annotations

import functools
from pathlib import Path

import bullmq

COMMANDS = Path(bullmq.__file__).parent / "commands"


@functools.cache
def bullmq_script(filename: str) -> str:
    """The Lua source of one of bullmq's scripts, e.g. `moveToFinished-14.lua`."""
    return (COMMANDS / filename).read_text()

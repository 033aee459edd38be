"""Child processes that end with their parent. A parent killed outright (`kill -9`, the OOM
killer) never stops its children: they lived on, re-parented, holding its output pipes (the
poller's validation workers: a supervisor never saw the poller end) or serving its port beside
the next parent's (ingest-api's workers). A child watching its parent acts once it is gone."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Final

# How often a child checks that its parent still lives.
PARENT_CHECK_SECONDS: Final = 1.0


def when_parent_gone(parent_pid: int, act: Callable[[], None], name: str = "parent-watch") -> None:
    """Call `act` (in a daemon thread of its own) once this process's parent is no longer
    `parent_pid`."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_SECONDS)
        act()

    threading.Thread(target=watch, name=name, daemon=True).start()

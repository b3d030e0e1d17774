"""The garbage collector in a long-running process."""

from __future__ import annotations

import gc


def freeze_startup() -> None:
    """Collect what start-up left over, then move every object still alive into the
    collector's permanent generation, which its collections never walk.

    A serving process holds about 220,000 objects once started (modules, the app, its
    catalogues and caches) that live as long as it does. Each full collection walked them
    all: about 200 ms with the event loop stopped, measured on a serving process, and seen
    in the webhook latency as a stall of 170-200 ms once or a few times in 20 s under load.
    Frozen, a full collection walks only what was made since."""
    gc.collect()
    gc.freeze()

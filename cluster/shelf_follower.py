"""Uploaded sounds and mode assignments seen by every ``--workers`` process.

The workers share the sound shelf (beside the state file). A change made through one worker's
operator API is stored there at once, under the shelf's lock (``media.catalog``); the others
notice it from the shelf's directory entries (names, sizes and times: no file is read while
nothing changed) and take it in. Among replicas Redis carries the same (``cluster.sound_share``).
"""

from __future__ import annotations

import asyncio
import logging

from media.catalog import SoundCatalog

logger = logging.getLogger(__name__)

FOLLOW_INTERVAL = 0.5
"""Seconds between two looks at the shelf: how late another worker's upload or assignment may be seen."""


async def follow_shelf(catalog: SoundCatalog, interval: float = FOLLOW_INTERVAL) -> None:
    """Until cancelled. Off the loop: listing a directory can stall on a slow disk."""
    seen = await asyncio.to_thread(catalog.shelf_signature)
    failing = False
    while True:
        await asyncio.sleep(interval)
        try:
            now = await asyncio.to_thread(catalog.shelf_signature)
            if now != seen:
                await asyncio.to_thread(catalog.follow_shelf)
                seen = now
        except OSError as error:
            if not failing:
                logger.warning("cannot read the sound shelf the workers share: %s", error)
            failing = True
            continue
        failing = False

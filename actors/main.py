"""``python -m actors.main``: run the control plane until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Sequence

from actors.config import ServerConfig, parse_config
from actors.logs import configure_logging
from actors.store import StateStore, StoreError, open_store
from media.library import SoundLibrary, build_library


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(argv)
    configure_logging(config.log_level, config.log_format)
    try:
        library = build_library(config.modes, config.frame_ms, config.sounds_dir)
        store = open_store(config.state_db)
    except (ValueError, StoreError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(config, library, store))
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


async def serve(config: ServerConfig, library: SoundLibrary, store: StateStore) -> None:
    from rpc.server import ControlPlane

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    plane = ControlPlane(config, library, store)
    try:
        await plane.start()
    except RuntimeError as error:
        raise OSError(f"cannot listen on {config.address}: {error}") from error
    await stopping.wait()
    await plane.stop()


if __name__ == "__main__":
    sys.exit(main())

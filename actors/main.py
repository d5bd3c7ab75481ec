"""``python -m actors.main``: run the control plane until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from actors.config import ServerConfig, parse_config
from actors.logs import configure_logging
from actors.store import StoreError

if TYPE_CHECKING:
    from rpc.server import ControlPlane


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(argv)
    configure_logging(config.log_level, config.log_format)
    from rpc.server import ControlPlane

    try:
        # Everything that can be wrong in the configuration fails here, naming the file.
        plane = ControlPlane(config)
    except (ValueError, StoreError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(config, plane))
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


async def serve(config: ServerConfig, plane: ControlPlane) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await plane.start()
    except RuntimeError as error:
        raise OSError(f"cannot listen on {config.address}: {error}") from error
    await stopping.wait()
    await plane.stop()


if __name__ == "__main__":
    sys.exit(main())

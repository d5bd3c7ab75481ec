"""Device authentication: a per-device token, the HMAC-SHA256 of the device_id under a server secret.

With a secret configured, every stream must carry ``device-token`` call metadata equal to
``token_for(secret, device_id)``, so a device can never act as another device_id. Tokens are
minted with ``python -m rpc.auth DEVICE_ID --secret-file FILE`` and flashed onto each device.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import sys
from collections.abc import Iterable
from pathlib import Path

TOKEN_KEY = "device-token"
MIN_SECRET_BYTES = 16


class AuthError(ValueError):
    """The message is sent to the device as the UNAUTHENTICATED details."""


def token_for(secret: bytes, device_id: str) -> str:
    return hmac.new(secret, device_id.encode("utf-8"), hashlib.sha256).hexdigest()


def load_secret(path: Path) -> bytes:
    """A start-up error naming the file when the secret is missing or too short to be one."""
    try:
        secret = path.read_bytes().strip()
    except OSError as error:
        raise ValueError(f"cannot read the device auth secret {path}: {error.strerror}") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the device auth secret in {path} is shorter than {MIN_SECRET_BYTES} bytes")
    return secret


class DeviceAuthenticator:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def check(self, device_id: str, metadata: Iterable[tuple[str, str | bytes]] | None) -> None:
        tokens = [value for key, value in (metadata or ()) if key == TOKEN_KEY]
        if not tokens:
            raise AuthError(f"missing {TOKEN_KEY} call metadata: this server authenticates devices")
        if len(tokens) > 1:
            raise AuthError(f"{TOKEN_KEY} call metadata given {len(tokens)} times; give it once")
        token = tokens[0]
        given = token.encode() if isinstance(token, str) else token
        if not hmac.compare_digest(given, token_for(self._secret, device_id).encode()):
            raise AuthError(f"{TOKEN_KEY} is not valid for device_id {device_id!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rpc.auth", description="Print a device's auth token.")
    parser.add_argument("device_id")
    parser.add_argument("--secret-file", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        print(token_for(load_secret(args.secret_file), args.device_id))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

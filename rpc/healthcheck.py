"""``python -m rpc.healthcheck``: exit 0 when the server on this host answers SERVING.

The container's HEALTHCHECK runs it, so the image needs no separate probe binary.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    target = args[0] if args else f"127.0.0.1:{os.environ.get('ACP_PORT', '50051')}"
    service = args[1] if len(args) > 1 else ""
    try:
        with grpc.insecure_channel(target) as channel:
            stub: Any = health_pb2_grpc.HealthStub(channel)  # the published stubs omit the RPC methods
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=3)
    except grpc.RpcError as error:
        print(f"unhealthy: {target}: {error.code().name}", file=sys.stderr)
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    print(f"{target}: {status}")
    return 0 if response.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())

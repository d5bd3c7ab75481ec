"""Registers DeviceService on a server like the generated ``add_DeviceServiceServicer_to_server``,
but with deserializers that never raise, and audio packets written as the bytes they already are.

gRPC answers a request that fails to parse with UNKNOWN and an internal exception text before
any handler runs. Here bytes that are not a valid message arrive as ``Malformed`` instead, and
the servicer answers INVALID_ARGUMENT with a message that says which message type was expected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from rpc import comms_pb2 as pb

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["DeviceService"].full_name
"""The one place the service's full name comes from: the generated descriptor (its package is part of every path)."""
M = TypeVar("M", bound=Message)


class Malformed:
    """Bytes that did not parse as ``expected``."""

    __slots__ = ("error", "expected")

    def __init__(self, expected: str, error: str) -> None:
        self.expected = expected
        self.error = error

    def __str__(self) -> str:
        return f"not a valid {self.expected}: {self.error}"


def tolerant(message_type: type[M]) -> Callable[[bytes], M | Malformed]:
    name = message_type.DESCRIPTOR.name

    def deserialize(data: bytes) -> M | Malformed:
        try:
            return message_type.FromString(data)
        except DecodeError as error:
            return Malformed(name, str(error))

    return deserialize


def _already_serialized(payload: bytes) -> bytes:
    """Audio packets are serialised once for every device that plays them (``rpc.tracks``)."""
    return payload


def add_device_service(servicer: Any, server: grpc.aio.Server) -> None:
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "StatusStream": grpc.stream_stream_rpc_method_handler(
            servicer.StatusStream,
            request_deserializer=tolerant(pb.DeviceStatusResponse),
            response_serializer=pb.DeviceStatusRequest.SerializeToString,
        ),
        "EventStream": grpc.stream_stream_rpc_method_handler(
            servicer.EventStream,
            request_deserializer=tolerant(pb.DeviceEvent),
            response_serializer=pb.DeviceEventResponse.SerializeToString,
        ),
        "ServerAudioStream": grpc.unary_stream_rpc_method_handler(
            servicer.ServerAudioStream,
            request_deserializer=tolerant(pb.AudioStreamRequest),
            response_serializer=_already_serialized,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)

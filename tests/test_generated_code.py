"""The committed gRPC code is exactly what comms.proto generates with the pinned grpcio-tools."""

from __future__ import annotations

from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ("comms_pb2.py", "comms_pb2.pyi", "comms_pb2_grpc.py")


def test_generated_code_matches_comms_proto(tmp_path: Path) -> None:
    status = protoc.main(
        [
            "protoc",
            f"-Irpc={ROOT}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            str(ROOT / "comms.proto"),
        ]
    )
    assert status == 0
    for name in GENERATED:
        fresh = (tmp_path / "rpc" / name).read_text()
        committed = (ROOT / "rpc" / name).read_text()
        assert fresh == committed, f"rpc/{name} is stale: regenerate it (see README, 'Changing comms.proto')"

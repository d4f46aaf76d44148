"""The gRPC floor: a grpc.aio server (on uvloop, as modelops-serve runs it) whose ModelInfer answers a
constant serialized response without parsing the request, so a server's gRPC cost above it is its own.

    python grpc_floor.py PORT RESPONSE_FILE
"""

import asyncio
import sys

import grpc


async def serve(port: int, answer: bytes) -> None:
    async def model_infer(request: bytes, context) -> bytes:
        return answer

    async def ready(request: bytes, context) -> bytes:
        return b"\x08\x01"  # ServerReadyResponse{ready: true}

    handler = grpc.method_handlers_generic_handler("inference.GRPCInferenceService", {
        "ModelInfer": grpc.unary_unary_rpc_method_handler(model_infer),
        "ServerReady": grpc.unary_unary_rpc_method_handler(ready),
    })
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    port, answer_file = int(sys.argv[1]), sys.argv[2]
    with open(answer_file, "rb") as f:
        answer = f.read()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(port, answer))
    else:
        uvloop.run(serve(port, answer))


if __name__ == "__main__":
    main()

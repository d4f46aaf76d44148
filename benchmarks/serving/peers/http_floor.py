"""The HTTP floor: uvicorn (httptools, uvloop, one worker) with a raw ASGI app that reads the request
body and answers a constant, so a server's cost above it is its own.

    python http_floor.py PORT RESPONSE_FILE
"""

import sys

import uvicorn


def make_app(answer: bytes):
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    return app


def main() -> None:
    port, answer_file = int(sys.argv[1]), sys.argv[2]
    with open(answer_file, "rb") as f:
        app = make_app(f.read())
    uvicorn.run(app, host="127.0.0.1", port=port, http="httptools", loop="uvloop", lifespan="off",
                access_log=False, log_level="warning", server_header=False)


if __name__ == "__main__":
    main()

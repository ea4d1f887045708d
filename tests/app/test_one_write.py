"""A response leaves in one write: the head is never on the wire without its body.

A proxy (nginx) can resend a request to another replica only while it has received nothing of
the answer; a replica killed between uvicorn's two writes (head, then body) would leave it
holding a status line with no body. Driven through the real protocol class with a recording
transport, so what is counted is exactly what reaches the socket.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from app.config import Settings
from app.server import protocol_class


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def make_app(fail_before_body: bool = False) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        if fail_before_body:
            raise RuntimeError("boom")
        await send({"type": "http.response.body", "body": b"hello"})

    return app


async def exchange(app: Any, request: bytes) -> RecordingTransport:
    config = uvicorn.Config(app, lifespan="off", log_level="critical")
    protocol = protocol_class(Settings())(config=config, server_state=ServerState(), app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(request)
    for _ in range(50):  # let the request task run to its end
        await asyncio.sleep(0)
        if protocol.cycle is None or protocol.cycle.response_complete:
            break
    protocol.connection_lost(None)
    return transport


async def test_head_and_body_leave_in_one_write() -> None:
    transport = await exchange(make_app(), b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.writes[0].endswith(b"\r\n\r\nhello")


async def test_close_after_the_answer_comes_after_the_write() -> None:
    transport = await exchange(make_app(), b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    assert len(transport.writes) == 1 and transport.writes[0].endswith(b"hello")
    assert transport.closed


async def test_failure_after_the_head_becomes_a_whole_500() -> None:
    transport = await exchange(make_app(fail_before_body=True), b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    wire = b"".join(transport.writes)
    assert wire.startswith(b"HTTP/1.1 500 ")  # the held 200 head never reached the client
    assert b"200 OK" not in wire

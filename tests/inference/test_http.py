"""The coalescing transport: writes of one event-loop turn leave as one, in order, and close flushes."""

from __future__ import annotations

import asyncio

from modelops_inference.http import CoalescingTransport


class FakeTransport:
    def __init__(self):
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str):
        return ("127.0.0.1", 1) if name == "peername" else None


def test_writes_in_one_loop_turn_are_sent_as_one_write_in_order():
    async def main():
        fake = FakeTransport()
        transport = CoalescingTransport(fake, asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(b"{}")
        assert fake.writes == []
        await asyncio.sleep(0)
        transport.write(b"next")
        await asyncio.sleep(0)
        return fake.writes

    assert asyncio.run(main()) == [b"HTTP/1.1 200 OK\r\n\r\n{}", b"next"]


def test_close_flushes_first_and_other_calls_pass_through():
    async def main():
        fake = FakeTransport()
        transport = CoalescingTransport(fake, asyncio.get_running_loop())
        transport.write(b"bye")
        transport.close()
        await asyncio.sleep(0)
        transport.write(b"late")  # after close: dropped, as a closed transport would
        await asyncio.sleep(0)
        return fake, transport.get_extra_info("peername")

    fake, peer = asyncio.run(main())
    assert fake.writes == [b"bye"] and fake.closed and peer == ("127.0.0.1", 1)

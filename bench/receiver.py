#!/usr/bin/env python3
"""A minimal HTTP/1.1 receiver for the outbound webhook benchmark: keep-alive, answers every
request 204, counts them. Single-threaded asyncio, so it is itself a limit (measured alone in
BENCHMARKS.md). Usage: receiver.py PORT COUNT_FILE; the count is written to COUNT_FILE every
100 ms and at exit (SIGTERM)."""
import asyncio
import signal
import sys

count = 0


class Hook(asyncio.Protocol):
    def connection_made(self, transport):
        self.t = transport
        self.buf = b""

    def data_received(self, data):
        global count
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in self.buf[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length:]
            count += 1
            self.t.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")


async def main(port, path):
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    server = await loop.create_server(Hook, "127.0.0.1", port, backlog=1024)
    while not stop.done():
        with open(path, "w") as f:
            f.write(str(count))
        await asyncio.wait([stop], timeout=0.1)
    server.close()
    with open(path, "w") as f:
        f.write(str(count))


asyncio.run(main(int(sys.argv[1]), sys.argv[2]))

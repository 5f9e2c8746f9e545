"""A shaping TCP relay: a wide-area network between a client and servers on 127.0.0.1.

This machine has no kernel netem (no `sch_netem`) and no toxiproxy server, and trickle does not
slow Python clients, so the network is simulated in user space, honestly but not perfectly:
every byte crossing the relay is delayed by half the round trip in each direction and queued
behind a bottleneck link of a given bandwidth (per connection and in total, per direction);
a new connection costs one extra round trip (the TCP handshake) before its first byte goes up.
Not modelled: TCP slow start, receive windows, loss. Both sides of a comparison (ccfcache over
HTTP, rsync over its daemon protocol) cross the same relay, so they pay the same network.

    python benchmarks/wan_proxy.py --rtt-ms 30 --mbit 100 --forward 8000 --forward 8730

prints one line `listen <port> -> <target port>` per --forward and one `control <port>`
line (connect to it to read the byte counters as JSON), then relays until killed. With
`--trace FILE`, every chunk delivered is written to FILE as `seconds connection direction bytes`
(`time.time()` when delivered): `wan_timeline.py FILE` shows how busy the link was.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time

READ = 64 * 1024


class Link:
    """One direction of a bottleneck: bytes are serialised at `bps` after each other."""

    def __init__(self, bps: float) -> None:
        self.bps = bps
        self.free_at = 0.0

    def book(self, start: float, size: int) -> float:
        """Serialise `size` bytes no earlier than `start`; return when the last one is out."""
        if self.bps <= 0:
            return start
        begin = max(start, self.free_at)
        self.free_at = begin + size * 8 / self.bps
        return self.free_at


class Stats:
    def __init__(self) -> None:
        self.up = 0  # client -> server bytes
        self.down = 0  # server -> client bytes
        self.connections = 0


class Shaper:
    def __init__(self, rtt: float, total_bps: float, conn_bps: float, trace=None) -> None:
        self.one_way = rtt / 2
        self.rtt = rtt
        self.total = {"up": Link(total_bps), "down": Link(total_bps)}
        self.conn_bps = conn_bps
        self.window = max(1 << 20, int(max(total_bps, conn_bps) / 8 * self.one_way) + (1 << 20))
        self.stats = Stats()
        self.trace = trace

    async def pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   direction: str, start_at: float, conn: int = 0) -> None:
        """Relay one direction: read as fast as the source sends (up to a window of bytes
        not yet delivered), deliver each chunk when the simulated network would."""
        loop = asyncio.get_running_loop()
        own = Link(self.conn_bps)
        own.free_at = start_at
        queue: asyncio.Queue = asyncio.Queue()
        room = asyncio.Semaphore(max(1, self.window // READ))

        async def deliver() -> None:
            while True:
                item = await queue.get()
                if item is None:
                    with contextlib.suppress(OSError, RuntimeError):
                        if writer.can_write_eof():
                            writer.write_eof()
                    return
                at, data = item
                delay = at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(data)
                if self.trace is not None:
                    self.trace.write(f"{time.time():.4f} {conn} "
                                     f"{direction} {len(data)}\n")
                await writer.drain()
                room.release()

        sender = asyncio.create_task(deliver())
        try:
            while True:
                await room.acquire()
                data = await reader.read(READ)
                if not data:
                    break
                now = loop.time()
                out = max(own.book(now, len(data)), self.total[direction].book(now, len(data)))
                setattr(self.stats, direction, getattr(self.stats, direction) + len(data))
                queue.put_nowait((out + self.one_way, data))
        except (ConnectionError, OSError):
            pass
        finally:
            queue.put_nowait(None)
            with contextlib.suppress(ConnectionError, OSError):
                await sender

    async def handle(self, client_r, client_w, target_port: int) -> None:
        self.stats.connections += 1
        conn = self.stats.connections
        loop = asyncio.get_running_loop()
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_w.close()
            return
        # the handshake: the client's first byte leaves one round trip after it connected
        start = loop.time() + self.rtt
        try:
            await asyncio.gather(self.pipe(client_r, server_w, "up", start, conn),
                                 self.pipe(server_r, client_w, "down", 0.0, conn))
        finally:
            for w in (client_w, server_w):
                with contextlib.suppress(OSError, RuntimeError):
                    w.close()

    async def control(self, _r, writer) -> None:
        s = self.stats
        if self.trace is not None:
            self.trace.flush()
        writer.write(json.dumps({"up": s.up, "down": s.down, "connections": s.connections,
                                 "time": time.time()}).encode())
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()


async def main_async(args) -> None:
    trace = open(args.trace, "w", buffering=1 << 16) if args.trace else None  # noqa: SIM115
    shaper = Shaper(args.rtt_ms / 1000, args.mbit * 1e6, (args.conn_mbit or args.mbit) * 1e6,
                    trace)
    servers = []
    for target in args.forward:
        server = await asyncio.start_server(
            lambda r, w, t=target: shaper.handle(r, w, t), "127.0.0.1", 0, backlog=256)
        servers.append(server)
        print(f"listen {server.sockets[0].getsockname()[1]} -> {target}", flush=True)
    control = await asyncio.start_server(shaper.control, "127.0.0.1", 0)
    print(f"control {control.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.get_running_loop().create_future()  # SIGTERM: flush the trace, then exit
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    serving = asyncio.gather(*(s.serve_forever() for s in [*servers, control]))
    await asyncio.wait([serving, stop], return_when=asyncio.FIRST_COMPLETED)
    serving.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await serving
    if trace is not None:
        trace.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rtt-ms", type=float, required=True, help="round trip, ms")
    parser.add_argument("--mbit", type=float, required=True,
                        help="bandwidth in total per direction, Mbit/s")
    parser.add_argument("--conn-mbit", type=float, default=0,
                        help="bandwidth per connection, Mbit/s (default: the total)")
    parser.add_argument("--forward", type=int, action="append", required=True,
                        help="a port on 127.0.0.1 to relay to (repeatable)")
    parser.add_argument("--trace", default=None,
                        help="write every chunk delivered to this file (see wan_timeline.py)")
    args = parser.parse_args(argv)
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()

"""A loopback TCP proxy that delays every byte by a fixed time in each direction.

    python tests/bench/delay_proxy.py --target-port 5432 [--delay-ms 1] [--max-connections 64]

It listens on 127.0.0.1 (an ephemeral port unless ``--port`` is given), prints the port it
bound on its first line of stdout, and forwards each accepted connection to
127.0.0.1:target-port. Each chunk read from one side is written to the other side
``delay-ms`` after it was read, in order, so a round trip gains twice the delay while the
byte stream stays pipelined (no throughput cap beyond the loopback's). The benchmark uses it
to stand in for a gateway a millisecond away from its database.

Bounded: at most ``--max-connections`` connections at once (the rest are closed at once),
at most ``_MAX_QUEUED_CHUNKS`` chunks in flight per direction (a full queue stops reading
that side, so a fast sender is back-pressured instead of buffered without limit), and it
only ever binds and connects to 127.0.0.1.

What a round trip actually gains is a little more than twice the delay: the two extra
hops and the timer's wake-up cost about 0.2–0.5 ms per round trip on a busy 2-core
machine (and asyncio timers cannot wait less than a whole millisecond, epoll timeouts
being rounded up, so this cannot be calibrated away below 1 ms). The suite measures the
round trip through the proxy and prints it beside the figures that used it. On a busy machine
a timer's wake-up also waits for a CPU, which would inject more than the network being
modelled; so :class:`DelayProxy` asks for a higher scheduling priority (nice -10) when it
may (as root), and carries on at the normal one when it may not.

:class:`DelayProxy` runs the proxy as a subprocess (so its event loop does not compete with
the benchmark's clients for the GIL) and stops it on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
from types import TracebackType

LOOPBACK = "127.0.0.1"
_CHUNK_BYTES = 64 * 1024
_MAX_QUEUED_CHUNKS = 256


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float) -> None:
    """Copy reader to writer, each chunk released ``delay_s`` after it was read."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(_MAX_QUEUED_CHUNKS)

    async def read_side() -> None:
        while chunk := await reader.read(_CHUNK_BYTES):
            await queue.put((loop.time() + delay_s, chunk))
        await queue.put((loop.time() + delay_s, b""))

    async def write_side() -> None:
        while True:
            due, chunk = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not chunk:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            writer.write(chunk)
            await writer.drain()

    reading = asyncio.create_task(read_side())
    try:
        await write_side()
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await reading


class _Proxy:
    def __init__(self, target_port: int, delay_s: float, max_connections: int) -> None:
        self.target_port = target_port
        self.delay_s = delay_s
        self.max_connections = max_connections
        self.open = 0

    async def handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        if self.open >= self.max_connections:
            c_writer.close()
            return
        self.open += 1
        s_writer: asyncio.StreamWriter | None = None
        try:
            s_reader, s_writer = await asyncio.open_connection(LOOPBACK, self.target_port)
            await asyncio.gather(
                _pipe(c_reader, s_writer, self.delay_s),
                _pipe(s_reader, c_writer, self.delay_s),
                return_exceptions=True,
            )
        except OSError:
            pass
        finally:
            self.open -= 1
            for w in (c_writer, s_writer):
                if w is not None:
                    w.close()
                    with contextlib.suppress(OSError):
                        await w.wait_closed()


async def serve(port: int, target_port: int, delay_s: float, max_connections: int) -> None:
    proxy = _Proxy(target_port, delay_s, max_connections)
    server = await asyncio.start_server(proxy.handle, LOOPBACK, port, limit=_CHUNK_BYTES)
    bound = server.sockets[0].getsockname()[1]
    print(bound, flush=True)
    async with server:
        await server.serve_forever()


def _raise_priority() -> None:
    with contextlib.suppress(OSError):
        os.nice(-10)


class DelayProxy:
    """``with DelayProxy(target_port, delay_ms=1.0) as proxy:`` → ``proxy.port`` on 127.0.0.1."""

    def __init__(self, target_port: int, *, delay_ms: float = 1.0, max_connections: int = 64):
        self.target_port = target_port
        self.delay_ms = delay_ms
        self.max_connections = max_connections
        self.port = 0
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> DelayProxy:
        self._proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--target-port",
                str(self.target_port),
                "--delay-ms",
                str(self.delay_ms),
                "--max-connections",
                str(self.max_connections),
            ],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            preexec_fn=_raise_priority,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if not line.isdigit():
            self.__exit__(None, None, None)
            raise RuntimeError(f"delay proxy did not start (said {line!r})")
        self.port = int(line)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--port", type=int, default=0, help="listen port (default: ephemeral)")
    parser.add_argument("--delay-ms", type=float, default=1.0, help="delay each way (1 ms)")
    parser.add_argument("--max-connections", type=int, default=64)
    args = parser.parse_args(argv)
    if not 0 <= args.delay_ms <= 1000:
        parser.error("--delay-ms must be between 0 and 1000")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve(args.port, args.target_port, args.delay_ms / 1000.0, args.max_connections)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

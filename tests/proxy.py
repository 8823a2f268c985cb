"""A forward proxy on 127.0.0.1 for tests: CONNECT tunnels (the only way in),
to hosts it alone can resolve, recording every byte it carries."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping


class TunnelProxy:
    """Tunnels `CONNECT host:port` to the address `hosts` maps the host to;
    refuses anything else with 403. `carried` is all it saw, both ways."""

    def __init__(self, hosts: Mapping[str, str]) -> None:
        self._hosts = dict(hosts)
        self._server: asyncio.Server | None = None
        self.carried = bytearray()
        self.connects: list[str] = []
        self.refused: list[bytes] = []
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> TunnelProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 1)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.carried += head
            method, target, _ = head.split(b"\r\n", 1)[0].split(b" ", 2)
            host, _, port = target.decode().rpartition(":")
            if method != b"CONNECT" or host not in self._hosts:
                self.refused.append(head)
                writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            self.connects.append(target.decode())
            up_reader, up_writer = await asyncio.open_connection(
                self._hosts[host], int(port)
            )
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await asyncio.gather(
                self._pipe(reader, up_writer), self._pipe(up_reader, writer)
            )
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while chunk := await reader.read(65536):
                self.carried += chunk
                writer.write(chunk)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

"""The floor of relaying a provider's stream: the least a Python process can do per token.

``python -m bench.relay_floor PORT|fd:N LLM_PORT`` serves ``POST`` on keep-alive HTTP/1.1
connections with bare asyncio streams: for each request it asks the LLM server on ``LLM_PORT``
for a streamed answer (one keep-alive connection per client connection) and writes every chunk
of that chunked body to the client as it is read — no framework, no JSON, no guard, no event
ids; one read and one write per token. ``bench.chat`` measures its CPU per relayed piece beside
the server's, in the same run, so that the figure is stated as a ratio to what this machine
charges for a wake-up, a read and a write.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys

from tests.fake_openai import listen_argument

ASK = json.dumps(
    {"model": "floor", "stream": True, "messages": [{"role": "user", "content": "floor"}]}
).encode()


async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, llm_port: int) -> None:
    upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", llm_port)
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return  # the client closed its connection
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            upstream_writer.write(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(ASK), ASK)
            )
            await upstream_reader.readuntil(b"\r\n\r\n")  # the provider's status and headers
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            while True:  # the provider's chunks, each one event, passed on one by one
                size_line = await upstream_reader.readline()
                data = await upstream_reader.readexactly(int(size_line, 16) + 2)
                writer.write(size_line + data)
                if size_line.strip() == b"0":
                    break
            await writer.drain()
    finally:
        upstream_writer.close()
        writer.close()


async def serve(listen_on: str, llm_port: int) -> None:
    """``listen_on``: a port, or ``fd:N`` (a listening socket inherited as descriptor N)."""
    port, sock = listen_argument(listen_on)
    if sock is not None:
        server = await asyncio.start_server(lambda r, w: relay(r, w, llm_port), sock=sock)
    else:
        server = await asyncio.start_server(
            lambda r, w: relay(r, w, llm_port), "127.0.0.1", port, backlog=1024
        )
    async with server:
        await server.serve_forever()


def main() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(sys.argv[1], int(sys.argv[2])))


if __name__ == "__main__":
    main()

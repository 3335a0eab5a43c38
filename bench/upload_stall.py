"""What one large multipart upload costs the server process that receives it.

Against a running server (`make run`, or any checkout served the same way): a thread pings
`GET /v1/health` every 10 ms while three multipart uploads of ``--mb`` MB of random bytes are
posted to a dataset (in a field Django's validation rejects, so nothing is stored or ingested).
It prints each upload's time, the pings' median and worst wait during the uploads, and the
server's peak memory before and after when ``--pid`` is given (Linux ``VmHWM``).
``--declared koi8-r`` posts documents instead: ``--mb`` MB of Russian text in that charset in
the ``file`` part, declared in its ``Content-Type`` (each upload's text its own; each document
deleted as soon as it is answered, so the worker does not ingest it).

    python -m bench.upload_stall --url http://127.0.0.1:8000 --key "$KEY" --dataset <id> [--pid N]

Run it against two servers in turn (before and after a change) to compare; docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import threading
import time
import urllib.parse
from pathlib import Path


def peak_kb(pid: int | None) -> int | None:
    if pid is None:
        return None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--mb", type=int, default=40)
    parser.add_argument("--pid", type=int, default=None)
    parser.add_argument("--declared", metavar="CHARSET", default=None)
    args = parser.parse_args()
    target = urllib.parse.urlsplit(args.url)
    host, port = target.hostname or "127.0.0.1", target.port or 80

    boundary = "benchboundary"
    size = args.mb * 1024 * 1024
    if args.declared:
        bodies = [declared_body(boundary, args.declared, size, n) for n in range(3)]
    else:
        part = (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="not_a_file"; filename="big.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        bodies = [part + os.urandom(size) + f"\r\n--{boundary}--\r\n".encode()] * 3
    waits: list[float] = []
    stop = threading.Event()

    def ping() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=60)
        while not stop.is_set():
            started = time.perf_counter()
            connection.request("GET", "/v1/health")
            connection.getresponse().read()
            waits.append(time.perf_counter() - started)
            time.sleep(0.01)

    before = peak_kb(args.pid)
    pinger = threading.Thread(target=ping)
    pinger.start()
    time.sleep(0.5)
    waits.clear()
    for body in bodies:
        connection = http.client.HTTPConnection(host, port, timeout=120)
        started = time.perf_counter()
        connection.request(
            "POST",
            f"/v1/datasets/{args.dataset}/documents",
            body=body,
            headers={
                "Authorization": f"Bearer {args.key}",
                "Content-Type": f"multipart/form-data; boundary={boundary}",
            },
        )
        response = connection.getresponse()
        answer = response.read()
        print(f"upload {args.mb} MB: {response.status} in {time.perf_counter() - started:.3f} s")
        if args.declared and response.status in (200, 202):
            connection.request("DELETE", f"/v1/documents/{json.loads(answer)['id']}",
                               headers={"Authorization": f"Bearer {args.key}"})  # fmt: skip
            connection.getresponse().read()
    stop.set()
    pinger.join()
    print(
        f"/v1/health during the uploads: median {statistics.median(waits) * 1000:.1f} ms, "
        f"worst {max(waits) * 1000:.1f} ms ({len(waits)} pings)"
    )
    after = peak_kb(args.pid)
    if before is not None and after is not None:
        print(f"server peak memory: {before / 1024:.0f} MB before, {after / 1024:.0f} MB after")


WORDS = (
    "оплата",
    "счёт",
    "договор",
    "поставка",
    "товар",
    "срок",
    "доставка",
    "возврат",
    "гарантия",
    "клиент",
    "заказ",
    "цена",
    "условия",
    "сервис",
    "претензия",
    "документ",
)


def declared_body(boundary: str, charset: str, size: int, n: int) -> bytes:
    """A multipart body whose ``file`` part is ``size`` bytes of text in ``charset``, declared."""
    rng = random.Random(n)  # noqa: S311 - filler text, not a secret
    block = " ".join(rng.choice(WORDS) for _ in range(100_000)).encode(charset)
    # Whole blocks, so that no character of a multi-byte charset is cut at the end.
    text = f"upload {n} {os.urandom(8).hex()}\n".encode() + block * max(1, size // len(block))
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="big-{n}.txt"\r\n'
        f"Content-Type: text/plain; charset={charset}\r\n\r\n"
    ).encode()
    return head + text + f"\r\n--{boundary}--\r\n".encode()


if __name__ == "__main__":
    main()

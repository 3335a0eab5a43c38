"""What one large multipart upload costs the server process that receives it.

Against a running server (`make run`, or any checkout served the same way): a thread pings
`GET /v1/health` every 10 ms while three multipart uploads of ``--mb`` MB of random bytes are
posted to a dataset (in a field Django's validation rejects, so nothing is stored or ingested).
It prints each upload's time, the pings' median and worst wait during the uploads, and the
server's peak memory before and after when ``--pid`` is given (Linux ``VmHWM``).

    python -m bench.upload_stall --url http://127.0.0.1:8000 --key "$KEY" --dataset <id> [--pid N]

Run it against two servers in turn (before and after a change) to compare; docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import http.client
import os
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
    args = parser.parse_args()
    target = urllib.parse.urlsplit(args.url)
    host, port = target.hostname or "127.0.0.1", target.port or 80

    boundary = "benchboundary"
    body = (
        (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="not_a_file"; filename="big.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + os.urandom(args.mb * 1024 * 1024)
        + f"\r\n--{boundary}--\r\n".encode()
    )
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
    for _ in range(3):
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
        response.read()
        print(f"upload {args.mb} MB: {response.status} in {time.perf_counter() - started:.3f} s")
    stop.set()
    pinger.join()
    print(
        f"/v1/health during the uploads: median {statistics.median(waits) * 1000:.1f} ms, "
        f"worst {max(waits) * 1000:.1f} ms ({len(waits)} pings)"
    )
    after = peak_kb(args.pid)
    if before is not None and after is not None:
        print(f"server peak memory: {before / 1024:.0f} MB before, {after / 1024:.0f} MB after")


if __name__ == "__main__":
    main()

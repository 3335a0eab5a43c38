"""Chat overhead and streams, against floors measured in the same run.

  floor      retrieval SQL (``knowledge.retrieval.search``, hybrid) + one non-streaming call to
             the zero-latency LLM server with the ``openai`` client — what a chat turn cannot
             avoid — run by 1 and 16 threads
  chat       ``POST /v1/chat`` (JSON) through an ASGI server (daphne, uvicorn, granian when
             installed), 1 and 16 concurrent keep-alive clients
  stream     the same with ``"stream": true``: time to the first byte (and that minus the
             authentication time the server reports in ``Server-Timing``), p50/p95 of the stream
  2 procs    daphne JSON served by two processes on one port, as `make run` and the api
             container serve with ``API_PROCESSES=2`` (``python -m chatbot_site.serve``)
  kept       daphne JSON with the query vector cache on (``EMBEDDING_QUERY_CACHE_SIZE``; the other
             rows turn it off, so that every question is embedded as a new one would be)
  pieces     server CPU per relayed SSE piece: a 2,000-piece answer minus a 1-piece answer;
             and with 32 streams at once each sent a token every 20 ms, beside the same
             figure for a bare asyncio relay (``bench.relay_floor``), the floor
  500        500 concurrent slow streams held by one server process: RSS per stream

The LLM is ``tests/fake_openai.py`` in a process of its own; the query embedding uses the local
model (as a default deployment does). A fresh database ``bench_chat`` holds one tenant whose bot
searches 300 passages. `make bench` runs it; ``BENCH_CHAT_REQUESTS`` sets the sample size,
``BENCH_CHAT_PARTS`` (comma-separated: latency, pieces, streams; default all; ``trickle``: the
trickle row of pieces alone) what runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import create_database, destroy_database, setup_django

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
REQUESTS = int(os.environ.get("BENCH_CHAT_REQUESTS", "200"))
PARTS = set(os.environ.get("BENCH_CHAT_PARTS", "latency,pieces,streams").split(","))
QUESTIONS = [
    "How do refunds work?", "When does my plan renew?", "How do I export my data?",
    "What is the rate limit?", "How do I rotate an API key?", "Where are invoices sent?",
]  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def wait_http(port: int, timeout: float = 30, process: Any = None) -> None:
    """Until the API on ``port`` answers (or ``process``, the server, has exited)."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (process is None or process.poll() is None):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=2)
            return
        except Exception:
            time.sleep(0.2)
    raise RuntimeError(f"server on {port} did not answer")


def server_argv(name: str, fd: int) -> list[str] | None:
    """The command line of ``name`` serving on the listening socket inherited as ``fd``."""
    app = "chatbot_site.asgi:application"
    if name == "daphne":
        return [str(BIN / "daphne"), "--fd", str(fd), "--access-log", "/dev/null", app]
    if name == "uvicorn" and (BIN / "uvicorn").exists():
        return [str(BIN / "uvicorn"), "--fd", str(fd), "--no-access-log", "--lifespan", "off",
                app]  # fmt: skip
    return None


@contextlib.contextmanager
def served(name: str, env: dict[str, str], log: Path) -> Iterator[tuple[int, Any] | None]:
    """``name`` (daphne, uvicorn, granian) serving the API: its port and process, or None when
    it is not installed. daphne and uvicorn are handed a listening socket; granian cannot take
    one and binds a port picked free (:func:`tests.processes.free_port`), tried again with
    another if that one was taken before it bound."""
    from tests.processes import free_port, running, serving_on_a_socket

    if name != "granian":
        if server_argv(name, 0) is None:
            yield None
            return
        argv_of = functools.partial(server_argv, name)
        with serving_on_a_socket(argv_of, env, log) as (port, proc):  # type: ignore[arg-type]
            yield port, proc
        return
    if not (BIN / "granian").exists():
        yield None
        return
    for _attempt in range(5):
        port = free_port()
        argv = [str(BIN / "granian"), "--interface", "asginl", "--host", "127.0.0.1", "--port",
                str(port), "--workers", "1", "--no-ws", "chatbot_site.asgi:application"]  # fmt: skip
        with running(argv, env, log) as proc:
            try:
                wait_http(port, process=proc)
            except RuntimeError:
                if proc.poll() is not None and "in use" in log.read_text(errors="replace"):
                    continue  # the port was taken before granian bound it
                raise
            yield port, proc
            return
    raise RuntimeError("granian found no free port in 5 tries")


async def post(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes, key: str
) -> tuple[float, float, bytes, float]:
    """One request on a keep-alive connection: (seconds to first byte, total seconds, body,
    seconds the server spent authenticating, from its ``Server-Timing`` header)."""
    started = time.perf_counter()
    writer.write(
        b"POST /v1/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    status_line = await reader.readline()
    first = time.perf_counter() - started
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    if not status_line.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(status_line.decode() + str(headers))
    chunks = []
    if headers.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readline()).strip(), 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            chunks.append(data[:-2])
    else:
        chunks.append(await reader.readexactly(int(headers["content-length"])))
    auth = 0.0
    for metric in headers.get("server-timing", "").split(","):
        name, _, duration = metric.strip().partition(";dur=")
        if name == "auth":
            auth = float(duration) / 1000
    return first, time.perf_counter() - started, b"".join(chunks), auth


async def load(
    port: int | list[int],
    key: str,
    bot: str,
    *,
    clients: int,
    total: int,
    stream: bool,
    warmup: int = 3,
) -> dict[str, float]:
    """``clients`` keep-alive connections, spread over ``port``'s servers as nginx would."""
    ports = port if isinstance(port, list) else [port]
    latencies: list[float] = []
    firsts: list[float] = []
    after_auth: list[float] = []  # first byte minus the server's authentication time
    per_client = max(1, total // clients)

    async def client(n: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", ports[n % len(ports)])
        for i in range(per_client + warmup):
            body = json.dumps({"bot_id": bot, "stream": stream, "messages": [
                {"role": "user", "content": QUESTIONS[(n + i) % len(QUESTIONS)]}]}).encode()  # fmt: skip
            first, elapsed, _, auth = await post(reader, writer, body, key)
            if i >= warmup:
                latencies.append(elapsed * 1000)
                firsts.append(first * 1000)
                after_auth.append((first - auth) * 1000)
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    elapsed = time.perf_counter() - started
    return {
        "p50": percentile(latencies, 0.5),
        "p95": percentile(latencies, 0.95),
        "rps": len(latencies) / elapsed,
        "first_p50": percentile(firsts, 0.5),
        "first_p95": percentile(firsts, 0.95),
        "after_auth_p50": percentile(after_auth, 0.5),
        "after_auth_p95": percentile(after_auth, 0.95),
    }


def floor(
    space: Any, vectors: list[list[float]], llm_url: str, *, threads: int
) -> dict[str, float]:
    import openai
    from django.db import connection

    from knowledge.retrieval import search

    latencies: list[float] = []
    per_thread = max(1, REQUESTS // threads)
    lock = threading.Lock()

    def work(n: int) -> None:
        client = openai.OpenAI(api_key="sk-bench", base_url=llm_url, max_retries=0)
        for i in range(per_thread + 3):
            started = time.perf_counter()
            question = QUESTIONS[(n + i) % len(QUESTIONS)]
            search(space, query=question, query_vector=vectors[(n + i) % len(vectors)], top_k=5)
            client.chat.completions.create(
                model="bench", messages=[{"role": "user", "content": question}]
            )
            if i >= 3:
                with lock:
                    latencies.append((time.perf_counter() - started) * 1000)
        connection.close()

    started = time.perf_counter()
    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    return {
        "p50": percentile(latencies, 0.5),
        "p95": percentile(latencies, 0.95),
        "rps": len(latencies) / elapsed,
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and of its living descendants (a launcher's daphne processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError):
            total += cpu_seconds(current)
        todo.extend(children.get(current, []))
    return total


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class Bench:
    """The benchmark's tenant (one bot over 300 passages, a chat key) in a fresh database
    ``bench_chat``, and the environment a server needs to serve it with the test provider on
    ``llm_port``."""

    secret: str
    bot_id: str
    space: Any
    query_vectors: Any
    llm_port: int
    base_env: dict[str, str]
    old_name: str
    # Listening on llm_port for the whole run: the provider is handed it (``fd:N``), so no
    # other process takes the port between the bench's runs of the provider.
    llm_socket: Any = None

    def provider_argv(self, *args: str) -> list[str]:
        """tests.fake_openai on :attr:`llm_socket` (pass its fileno in ``pass_fds``)."""
        return [sys.executable, "-m", "tests.fake_openai", f"fd:{self.llm_socket.fileno()}",
                *args]  # fmt: skip


def build_bench() -> Bench:
    setup_django()
    from django.db import connection

    from bots.models import Bot
    from knowledge.embeddings import get_embedder
    from knowledge.models import BotDataset, Chunk, Dataset, Document, DocumentStatus
    from knowledge.retrieval import search_space_for_bot
    from tenants.models import Role, Tenant
    from tenants.services import Actor, api_key_create
    from tests.processes import listening_socket

    old_name = create_database("bench_chat")
    tenant = Tenant.objects.create(slug="bench", name="bench",
                                   default_rate_limit_per_minute=10_000_000)  # fmt: skip
    bot = Bot.objects.for_tenant(tenant).create(tenant=tenant, name="bot", top_k=5)
    dataset = Dataset.objects.for_tenant(tenant).create(tenant=tenant, name="faq")
    BotDataset.objects.for_tenant(tenant).create(tenant=tenant, bot=bot, dataset=dataset)
    document = Document.objects.for_tenant(tenant).create(
        tenant=tenant, dataset=dataset, title="FAQ", source="faq.md", source_type="record",
        status=DocumentStatus.READY, content_hash="0" * 64,
    )  # fmt: skip
    topics = ["refunds", "renewal", "export", "rate limits", "API keys", "invoices"]
    texts = [f"Passage {i} about {topics[i % 6]}: how {topics[i % 6]} work for account "
             f"holders, with the steps and the limits that apply." for i in range(300)]  # fmt: skip
    embedder = get_embedder()
    vectors = embedder.embed(texts)
    Chunk.objects.for_tenant(tenant).bulk_create(
        Chunk(tenant=tenant, dataset=dataset, document=document, ordinal=i, text=text,
              token_count=embedder.count_tokens(text),  # as ingestion stores it
              embedding=vector, embedding_model=embedder.model)
        for i, (text, vector) in enumerate(zip(texts, vectors, strict=True))
    )  # fmt: skip
    _key, secret = api_key_create(tenant=tenant, actor=Actor.system("bench"), role=Role.CHAT)
    db = connection.settings_dict
    database_url = (
        f"postgresql://{db['USER']}@/{db['NAME']}?host={db['HOST']}"
        if str(db["HOST"]).startswith("/")
        else f"postgresql://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    )
    llm_socket = listening_socket()
    llm_port = int(llm_socket.getsockname()[1])
    base_env = dict(os.environ, PYTHONPATH=str(ROOT), DATABASE_URL=database_url,
                    LLM_BACKEND="openai", OPENAI_API_KEY="sk-bench",
                    OPENAI_BASE_URL=f"http://127.0.0.1:{llm_port}/v1", LOG_LEVEL="WARNING",
                    DB_POOL="true",  # the default (test settings keep it too)
                    # Every question embedded, as a stream of new questions would be; the
                    # "kept query vectors" rows show the default cache on six repeated ones.
                    EMBEDDING_QUERY_CACHE_SIZE="0",
                    DJANGO_SETTINGS_MODULE="chatbot_site.settings.test")  # fmt: skip
    return Bench(secret=secret, bot_id=str(bot.pk), space=search_space_for_bot(bot),
                 query_vectors=embedder.embed(QUESTIONS), llm_port=llm_port,
                 base_env=base_env, old_name=old_name, llm_socket=llm_socket)  # fmt: skip


def main() -> int:
    bench = build_bench()
    secret, space, query_vectors = bench.secret, bench.space, bench.query_vectors
    base_env, bot_id = bench.base_env, bench.bot_id
    logs = ROOT / ".data" / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)

    rows: list[str] = []
    if "latency" in PARTS:
        latency_rows(rows, bench, logs, space, query_vectors, secret, bot_id)
        print(f"\nPOST /v1/chat, zero-latency LLM (20-word answer), {REQUESTS} requests per row")
        print(
            "\n| path | clients | p50 ms | p95 ms | req/s | p95 over floor ms "
            "| first byte p50/p95 ms |"
        )
        print("|---|---|---|---|---|---|---|")
        for row in rows:
            print(row)
    print("\n| measure | value |\n|---|---|")
    if "pieces" in PARTS:
        pieces(base_env, logs, secret, bot_id)
    if "pieces" in PARTS or "trickle" in PARTS:
        trickle_row(base_env, logs, secret, bot_id)
    if "streams" in PARTS:
        held_streams(base_env, logs, secret, bot_id)
    destroy_database(bench.old_name)
    return 0


def table_row(label: str, clients: int, r: dict[str, float], floor: dict[str, float],
        first: str = "") -> str:  # fmt: skip
    """One line of the latency table: the load's figures and its p95 over the floor's."""
    return (
        f"| {label} | {clients} | {r['p50']:.1f} | {r['p95']:.1f} | {r['rps']:.0f} | "
        f"+{r['p95'] - floor['p95']:.1f} | {first} |"
    )


def latency_rows(rows: list[str], bench: Bench, logs: Path, space: Any, query_vectors: Any,
                 secret: str, bot_id: str) -> None:  # fmt: skip
    from tests.processes import announced, running, wait_for

    llm_port, base_env = bench.llm_port, bench.base_env
    with running(bench.provider_argv("20"), base_env, logs / "llm.log",
                 pass_fds=[bench.llm_socket.fileno()]):  # fmt: skip
        time.sleep(1)
        llm_url = f"http://127.0.0.1:{llm_port}/v1"
        floors = {c: floor(space, query_vectors, llm_url, threads=c) for c in (1, 16)}
        for c, f in floors.items():
            rows.append(f"| floor | {c} | {f['p50']:.1f} | {f['p95']:.1f} | {f['rps']:.0f} | | |")
        for name, cached in (("daphne", False), ("uvicorn", False), ("granian", False),
                             ("daphne", True)):  # fmt: skip
            env = dict(base_env, EMBEDDING_QUERY_CACHE_SIZE="4096") if cached else base_env
            with served(name, env, logs / f"{name}.log") as server:
                if server is None:
                    rows.append(f"| {name} | not installed | | | | | |")
                    continue
                port = server[0]
                wait_http(port)
                for clients in (1, 16):
                    for stream in (False,) if cached else (False, True):
                        r = asyncio.run(load(port, secret, bot_id, clients=clients,
                                             total=REQUESTS, stream=stream))  # fmt: skip
                        f = floors[clients]
                        label = f"{name} {'stream' if stream else 'json'}"
                        label += ", kept query vectors" if cached else ""
                        first = (
                            f"{r['first_p50']:.1f} / {r['first_p95']:.1f} (after auth "
                            f"{r['after_auth_p50']:.1f} / {r['after_auth_p95']:.1f})"
                            if stream
                            else ""
                        )
                        rows.append(table_row(label, clients, r, f, first))
        # Two processes as `make run` and the api container serve with API_PROCESSES=2
        # (chatbot_site.serve: one port, a listening socket per process).
        # On a port of its own choosing, which it reports (-p 0).
        argv = [str(BIN / "python"), "-m", "chatbot_site.serve", "-b", "127.0.0.1", "-p", "0",
                "--access-log", "/dev/null", "chatbot_site.asgi:application"]  # fmt: skip
        log = logs / "daphne-2.log"
        with running(argv, dict(base_env, API_PROCESSES="2"), log):
            base = wait_for(lambda: announced(log), timeout=60, what="the launcher's address")
            port = int(base.rsplit(":", 1)[1])
            wait_http(port)
            # Each process loads its embedding model before it is timed.
            asyncio.run(load(port, secret, bot_id, clients=16, total=64, stream=False))
            for clients in (1, 16):
                r = asyncio.run(load(port, secret, bot_id, clients=clients, total=REQUESTS,
                                     stream=False))  # fmt: skip
                rows.append(table_row("daphne json, 2 processes", clients, r, floors[clients]))


def pieces(base_env: dict[str, str], logs: Path, secret: str, bot_id: str) -> None:
    """Server CPU per relayed SSE piece: a 2,001-word answer minus a 1-word answer (daphne),
    each word one chunk of the provider's chunked body, sent as fast as the provider can (they
    arrive in bursts, relayed together) and 0.5 ms apart (a token-at-a-time provider: with
    ``LLM_STREAM_BATCH_SECONDS=0`` a network read and an event per piece; by default, once it
    is seen trickling, about one per 20 ms).
    """
    results: dict[str, float] = {}
    for label, words, delay, requests in (("one", 1, 0.0, 20), ("burst", 2001, 0.0, 20),
                                          ("paced", 2001, 0.0005, 10)):  # fmt: skip
        with (
            provider(base_env, logs / "llm-pieces.log", str(words), str(delay)) as env,
            daphne_served(env, logs / "daphne-pieces.log") as (port, p),
        ):
            wait_http(port)
            asyncio.run(load(port, secret, bot_id, clients=1, total=3, stream=True))
            before = cpu_seconds(p.pid)
            asyncio.run(load(port, secret, bot_id, clients=1, total=requests, stream=True,
                             warmup=0))  # fmt: skip
            results[label] = (cpu_seconds(p.pid) - before) / requests
    for label, text in (("burst", "pieces arriving together"),
                        ("paced", "a piece every 0.5 ms")):  # fmt: skip
        per_piece = (results[label] - results["one"]) / 2000 * 1e6
        print(f"| server CPU per relayed piece, {text} | {per_piece:.1f} µs |")


def trickle_row(base_env: dict[str, str], logs: Path, secret: str, bot_id: str) -> None:
    """The trickle's row (:func:`trickle`), daphne and the floor measured in turn, one row per
    round (``BENCH_TRICKLE_ROUNDS``, default 1). ``BENCH_CHAT_PARTS=trickle`` runs it alone."""
    for _round in range(int(os.environ.get("BENCH_TRICKLE_ROUNDS", "1"))):
        ours, floor_ = (
            trickle(base_env, logs, secret, bot_id, server) for server in ("daphne", "floor")
        )
        print(f"| server CPU per relayed piece, {TRICKLE_CLIENTS} streams at once, each sent a "
              f"token every {TRICKLE_GAP * 1000:.0f} ms | {ours * 1e6:.1f} µs; floor (a bare "
              f"asyncio relay, `bench.relay_floor`) {floor_ * 1e6:.1f} µs: "
              f"{ours / floor_:.2f}x |", flush=True)  # fmt: skip


TRICKLE_CLIENTS = 32
TRICKLE_GAP = 0.02  # a token every 20 ms: 50 tokens/s, as hosted models stream
TRICKLE_WORDS = (51, 201)


def trickle(base_env: dict[str, str], logs: Path, secret: str, bot_id: str, server: str) -> float:
    """Server CPU per relayed piece when every piece is a token of its own: ``TRICKLE_CLIENTS``
    streams at once, the provider sending each a token every ``TRICKLE_GAP`` seconds (the
    relay's pacing gathers nothing at that rate). Per piece = (CPU per request of the longer
    answer - of the shorter) / the difference in pieces, both at the same concurrency, so the
    turn's own costs cancel out. ``server``: daphne, or ``floor`` (:mod:`bench.relay_floor`)."""
    from tests.processes import serving_on_a_socket

    per_request: list[float] = []
    requests = 2 * TRICKLE_CLIENTS
    for words in TRICKLE_WORDS:
        with provider(base_env, logs / "llm-trickle.log", str(words), str(TRICKLE_GAP)) as env:
            llm_port = int(env["OPENAI_BASE_URL"].rsplit(":", 1)[1].split("/")[0])

            def argv_of(fd: int, llm_port: int = llm_port) -> list[str]:
                if server == "daphne":
                    return server_argv("daphne", fd) or []
                return [sys.executable, "-m", "bench.relay_floor", f"fd:{fd}", str(llm_port)]

            with serving_on_a_socket(argv_of, env, logs / f"{server}-trickle.log") as (
                port,
                process,
            ):
                wait_port(port)
                asyncio.run(load(port, secret, bot_id, clients=TRICKLE_CLIENTS,
                                 total=TRICKLE_CLIENTS, stream=True, warmup=0))  # fmt: skip
                before = cpu_seconds(process.pid)
                asyncio.run(load(port, secret, bot_id, clients=TRICKLE_CLIENTS, total=requests,
                                 stream=True, warmup=0))  # fmt: skip
                per_request.append((cpu_seconds(process.pid) - before) / requests)
    return (per_request[1] - per_request[0]) / (TRICKLE_WORDS[1] - TRICKLE_WORDS[0])


def daphne_served(
    env: dict[str, str], log: Path
) -> contextlib.AbstractContextManager[tuple[int, Any]]:
    """daphne serving the API on a listening socket handed to it: its port and process."""
    from tests.processes import serving_on_a_socket

    return serving_on_a_socket(lambda fd: server_argv("daphne", fd) or [], env, log)


@contextlib.contextmanager
def provider(base_env: dict[str, str], log: Path, *args: str) -> Iterator[dict[str, str]]:
    """tests.fake_openai (``args``: reply words, delay) on a listening socket handed to it;
    ``base_env`` with OPENAI_BASE_URL naming it."""
    from tests.processes import serving_on_a_socket

    def argv_of(fd: int) -> list[str]:
        return [sys.executable, "-m", "tests.fake_openai", f"fd:{fd}", *args]

    with serving_on_a_socket(argv_of, base_env, log) as (llm_port, _process):
        yield dict(base_env, OPENAI_BASE_URL=f"http://127.0.0.1:{llm_port}/v1")


def wait_port(port: int, timeout: float = 30) -> None:
    """Until something accepts connections on ``port``."""
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {port}")


def held_streams(base_env: dict[str, str], logs: Path, secret: str, bot_id: str) -> None:
    """500 concurrent slow streams held by one daphne process: time and memory per stream."""
    streams = 500
    with (
        provider(base_env, logs / "llm-slow.log", "30", "0.5") as env,
        daphne_served(env, logs / "daphne-500.log") as (port, p),
    ):
        wait_http(port)
        asyncio.run(load(port, secret, bot_id, clients=2, total=4, stream=True))
        idle = rss_bytes(p.pid)
        peak = idle
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, rss_bytes(p.pid))
                time.sleep(0.2)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.perf_counter()
        result = asyncio.run(load(port, secret, bot_id, clients=streams, total=streams,
                                  stream=True, warmup=0))  # fmt: skip
        done.set()
        sampler.join()
    print(f"| {streams} concurrent streams (30 pieces, 0.5 s apart) | all completed in "
          f"{time.perf_counter() - started:.1f} s; p95 {result['p95'] / 1000:.1f} s |")  # fmt: skip
    print(f"| server RSS idle → peak | {idle / 2**20:.0f} MB → {peak / 2**20:.0f} MB |")
    print(f"| memory per held stream | {(peak - idle) / streams / 1024:.0f} kB |")


if __name__ == "__main__":
    sys.exit(main())

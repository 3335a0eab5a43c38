"""No Docker engine runs on the development machines, so the container setup is checked here:
the compose file's services, ports, env and health checks; the Dockerfile; the nginx config
(structure always, and `nginx -t` where nginx is installed)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
NGINX_CONF = (ROOT / "docker" / "nginx.conf").read_text()
# The variables of API.md's "Settings" section.
CONTRACT_SETTINGS = [
    "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "CORS_ALLOWED_ORIGINS",
    "OPENAI_API_KEY", "OPENAI_BASE_URL", "LLM_BACKEND", "CHAT_MODEL", "EMBEDDING_BACKEND",
    "EMBEDDING_MODEL", "EMBEDDING_DIMENSIONS", "LOG_LEVEL", "LOG_FORMAT", "HOST", "PORT",
]  # fmt: skip


def env_of(service: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in SERVICES[service].get("environment", {}).items()}


def test_compose_has_every_service_of_the_stack():
    assert {"api", "worker", "postgres", "redis", "nginx", "migrate"} <= set(SERVICES)
    assert "pgvector" in SERVICES["postgres"]["image"]
    assert SERVICES["redis"]["image"].startswith("redis:")
    # Sized for retrieval's working set, not PostgreSQL's 128 MB default (docs/BENCHMARKS.md).
    command = SERVICES["postgres"]["command"]
    assert command[0] == "postgres"
    assert "shared_buffers=${POSTGRES_SHARED_BUFFERS:-1GB}" in command


def test_compose_app_services_get_database_and_redis_of_the_stack():
    for name in ("api", "worker", "migrate"):
        env = env_of(name)
        assert "@postgres:5432/" in env["DATABASE_URL"], name
        assert env["REDIS_URL"].startswith("redis://redis:6379"), name
        assert SERVICES[name]["env_file"] == ".env", name
    # The statement bound is the API's: migrate builds indexes, the worker stores documents.
    assert env_of("api")["DB_STATEMENT_TIMEOUT_SECONDS"] == "${DB_STATEMENT_TIMEOUT_SECONDS:-30}"
    assert not any("DB_STATEMENT_TIMEOUT_SECONDS" in env_of(n) for n in ("worker", "migrate"))
    assert "celery -A chatbot_site worker" in " ".join(SERVICES["worker"]["command"])
    assert "migrate" in SERVICES["migrate"]["command"]


def test_compose_api_waits_for_healthy_database_and_migrations():
    for name in ("api", "worker"):
        depends = SERVICES[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert SERVICES["nginx"]["depends_on"]["api"]["condition"] == "service_healthy"


def test_compose_long_running_services_have_health_checks():
    for name in ("api", "worker", "postgres", "redis", "nginx"):
        assert SERVICES[name].get("healthcheck", {}).get("test"), name
    assert "/v1/health" in " ".join(SERVICES["api"]["healthcheck"]["test"])


def test_compose_publishes_only_nginx():
    assert any(str(p).endswith(":80") for p in SERVICES["nginx"]["ports"])
    for name in ("api", "worker", "postgres", "redis", "migrate"):
        assert "ports" not in SERVICES[name], f"{name} must not be published"


def test_dockerfile_is_multi_stage_non_root_with_health_check():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", dockerfile, re.M)) >= 2
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users and users[-1] not in {"root", "0"}
    assert "HEALTHCHECK" in dockerfile
    assert "DJANGO_SETTINGS_MODULE=chatbot_site.settings.production" in dockerfile
    assert "requirements/base.txt" in dockerfile


def test_the_container_serves_the_api_with_the_launcher():
    """The api container runs ``chatbot_site.serve`` (``API_PROCESSES`` daphne processes on port
    8000; one, a plain daphne, unless it says more), with daphne's proxy headers on."""
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    cmd = re.findall(r"^CMD (\[.*\])$", dockerfile, re.M)[-1]
    argv = json.loads(cmd)
    assert argv[:3] == ["python", "-m", "chatbot_site.serve"]
    assert argv[argv.index("-p") + 1] == "8000" and "--proxy-headers" in argv
    assert argv[-1] == "chatbot_site.asgi:application"


def location_block(path: str) -> str:
    match = re.search(r"location\s*=?\s*" + re.escape(path) + r"\s*\{(.*?)\}", NGINX_CONF, re.S)
    assert match, f"no location for {path}"
    return match.group(1)


def test_nginx_is_safe_for_server_sent_events():
    chat = location_block("/v1/chat")
    assert "proxy_buffering off" in chat
    assert "gzip off" in chat
    timeout = re.search(r"proxy_read_timeout\s+(\d+)s", chat)
    assert timeout and int(timeout.group(1)) >= 300
    assert "client_max_body_size" in NGINX_CONF
    assert "X-Forwarded-Proto" in NGINX_CONF
    assert "X-Request-ID" in NGINX_CONF
    assert "server_tokens off" in NGINX_CONF


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )


CORS_MAP = "/etc/nginx/chatbot-cors-origins"


def test_compose_gives_nginx_the_apps_allowed_origins():
    """nginx's own errors carry CORS for the app's origins: the compose file passes the
    variable (not the whole .env: secrets) and mounts the script that writes them for nginx."""
    nginx = SERVICES["nginx"]
    assert env_of("nginx") == {"CORS_ALLOWED_ORIGINS": "${CORS_ALLOWED_ORIGINS:-}"}
    assert "env_file" not in nginx
    script = "./docker/nginx-cors-origins.sh:/docker-entrypoint.d/40-chatbot-cors-origins.sh:ro"
    assert script in nginx["volumes"]
    assert os.access(ROOT / "docker" / "nginx-cors-origins.sh", os.X_OK)  # else skipped
    assert f"include {CORS_MAP}*.map;" in NGINX_CONF


def nginx_main_conf(
    tmp_path: Path, *, upstream: str, listen: str | None = None, origins: str = ""
) -> Path:
    """docker/nginx.conf as the compose file serves it, with its upstream (and port) replaced,
    and the CORS origins written by the compose file's script from ``origins``."""
    (tmp_path / "logs").mkdir(exist_ok=True)
    conf = NGINX_CONF.replace("server api:8000", f"server {upstream}")
    conf = conf.replace(CORS_MAP, str(tmp_path / "chatbot-cors-origins"))
    subprocess.run(
        ["sh", str(ROOT / "docker" / "nginx-cors-origins.sh")],
        env={**os.environ, "CORS_ALLOWED_ORIGINS": origins,
             "CHATBOT_CORS_MAP": str(tmp_path / "chatbot-cors-origins.map")},
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    if listen is not None:
        conf = conf.replace("listen 80;", f"listen {listen};")
    server = tmp_path / "server.conf"
    server.write_text(conf)
    main = tmp_path / "nginx.conf"
    # As root, nginx's workers would run as nobody, who cannot write under pytest's tmp dirs.
    user = "user root;" if os.geteuid() == 0 else ""
    main.write_text(f"""
        {user}
        pid {tmp_path}/nginx.pid;
        error_log {tmp_path}/logs/error.log;
        daemon off;
        events {{}}
        http {{
            access_log off;
            client_body_temp_path {tmp_path}/body;
            proxy_temp_path {tmp_path}/proxy;
            fastcgi_temp_path {tmp_path}/fastcgi;
            uwsgi_temp_path {tmp_path}/uwsgi;
            scgi_temp_path {tmp_path}/scgi;
            include {server};
        }}
        """)
    return main


def test_nginx_config_passes_nginx_t_where_nginx_is_installed(tmp_path):
    binary = nginx_binary()
    if binary is None:
        # `make test` installs nginx where it can (root with apt); the structure test above
        # still checks this file everywhere.
        print("nginx not installed: structure checked only")
        return
    main = nginx_main_conf(tmp_path, upstream="127.0.0.1:8000")
    result = subprocess.run(
        [binary, "-t", "-p", str(tmp_path), "-c", str(main)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


def test_env_example_documents_every_contract_setting():
    example = (ROOT / ".env.example").read_text()
    named = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, re.M))
    missing = [name for name in CONTRACT_SETTINGS if name not in named]
    assert not missing, missing


@pytest.mark.django_db(transaction=True)
@pytest.mark.integration
def test_too_large_bodies_are_refused_in_the_envelope_behind_nginx(tmp_path):
    """The compose file's nginx in front of daphne: a body over the app's limit is refused by the
    app (nginx lets it through), one over nginx's by nginx, both as the contract's 413."""
    binary = nginx_binary()
    if binary is None:
        print("nginx not installed: structure checked only")
        return
    from chatbot_site.servers import body_limit
    from tests.processes import child_env, daphne_server, parse_answer, raw_request
    from tests.world import build_tenant

    side = build_tenant("behind-nginx")
    path = f"/v1/datasets/{side.dataset.pk}/documents"
    with (
        daphne_server(child_env(), tmp_path / "daphne.log") as app,
        nginx_in_front(tmp_path, binary, app.removeprefix("http://")) as base,
    ):
        # nginx reads a body whole before it passes it on: the app's refusal needs the body.
        for size, refused_by in ((body_limit() + 1, "app"), (60 * 1024 * 1024, "nginx")):
            head = (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {side.admin_key.plaintext}\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
            piece = b"x" * (1024 * 1024)
            parts = (piece[: size - offset] for offset in range(0, size, len(piece)))
            status, headers, body = parse_answer(
                raw_request(
                    base,
                    head,
                    parts if refused_by == "app" else (),
                    timeout=30,
                )
            )
            assert status == 413, (refused_by, status, body)
            error = body["error"]
            assert error["code"] == "payload_too_large", (refused_by, error)
            assert error["request_id"] == headers["x-request-id"], (refused_by, headers)
            if refused_by == "app":
                assert error["details"] == {"limit_bytes": body_limit()}


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


@contextlib.contextmanager
def nginx_in_front(tmp_path: Path, binary: str, upstream: str, origins: str = "") -> Iterator[str]:
    """The compose file's nginx config served on a free port in front of ``upstream``
    (host:port), with ``origins`` as CORS_ALLOWED_ORIGINS: its base URL, once it listens."""
    from tests.processes import listening_socket, nginx_env, running, wait_for

    # nginx is handed the socket it listens on: a port picked free and bound by nginx later
    # could be taken in between by another of the suite's workers (nginx then failed to start,
    # or the test spoke to the other server).
    with listening_socket() as sock:
        port = sock.getsockname()[1]
        main = nginx_main_conf(tmp_path, upstream=upstream, listen=f"127.0.0.1:{port}",
                               origins=origins)  # fmt: skip
        argv = [binary, "-p", str(tmp_path), "-c", str(main)]
        with running(argv, nginx_env(sock), tmp_path / "nginx.log", pass_fds=[sock.fileno()]):
            sock.close()  # nginx holds it
            wait_for(lambda: port_open(port), timeout=20, what="nginx to listen")
            yield f"http://127.0.0.1:{port}"


def test_an_unreachable_api_is_503_in_the_envelope_behind_nginx(tmp_path):
    binary = nginx_binary()
    if binary is None:
        print("nginx not installed: structure checked only")
        return
    from tests.processes import parse_answer, raw_request, refusing_address

    with refusing_address() as down, nginx_in_front(tmp_path, binary, down) as base:
        status, headers, body = parse_answer(
            raw_request(
                base,
                b"GET /v1/bots HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                timeout=30,
            )
        )
    assert status == 503, body
    assert headers["retry-after"] == "5"
    error = body["error"]
    assert error["code"] == "service_unavailable"
    assert error["request_id"]


APP = "https://app.example.com"


def test_nginx_own_errors_are_envelopes_a_page_of_an_allowed_origin_can_read(tmp_path):
    """nginx answers these itself (the api down; a body past client_max_body_size; TRACE; a
    path of its own): a page of an allowed origin could read none of them (no CORS headers),
    and 405 was an HTML page."""
    binary = nginx_binary()
    if binary is None:
        print("nginx not installed: structure checked only")
        return
    from tests.processes import parse_answer, raw_request, refusing_address

    def answer(base: str, head: str, origin: str = APP) -> tuple[int, dict[str, str], dict]:
        extra = f"Origin: {origin}\r\n" if origin else ""
        request = f"{head}\r\nHost: x\r\n{extra}Connection: close\r\n\r\n"
        return parse_answer(raw_request(base, request.encode(), timeout=30))

    # the api is down: its address refuses
    with (
        refusing_address() as upstream,
        nginx_in_front(tmp_path, binary, upstream, origins=f"{APP}, http://localhost:3000") as base,
    ):
        cases = {
            "GET /v1/bots HTTP/1.1": (503, "service_unavailable"),
            "POST /v1/bots HTTP/1.1\r\nContent-Length: 60000000": (413, "payload_too_large"),
            "TRACE /v1/bots HTTP/1.1": (405, "method_not_allowed"),
            "GET /__errors/bad_request HTTP/1.1": (404, "not_found"),
        }
        for head, (status, code) in cases.items():
            got, headers, body = answer(base, head)
            assert (got, body["error"]["code"]) == (status, code), (head, body)
            assert body["error"]["request_id"] == headers["x-request-id"], head
            assert headers["access-control-allow-origin"] == APP, (head, headers)
            exposed = headers["access-control-expose-headers"].lower()
            assert "x-request-id" in exposed and "retry-after" in exposed, head
            assert "origin" in headers["vary"].lower(), head
        assert answer(base, "GET /v1/bots HTTP/1.1")[1]["retry-after"] == "5"
        # The other allowed origin; and none for an origin not allowed, or no origin.
        other = answer(base, "GET /v1/bots HTTP/1.1", "http://localhost:3000")[1]
        assert other["access-control-allow-origin"] == "http://localhost:3000"
        for origin in ("https://evil.example.net", "https://app.example.com.evil.net", ""):
            status, headers, _ = answer(base, "GET /v1/bots HTTP/1.1", origin)
            assert status == 503 and "access-control-allow-origin" not in headers, origin
            assert "access-control-expose-headers" not in headers, origin
        # A client's request id that would break the JSON it is quoted in is replaced.
        status, headers, body = answer(base, 'GET /v1/bots HTTP/1.1\r\nX-Request-ID: a"b')
        assert status == 503 and body["error"]["request_id"] == headers["x-request-id"] != 'a"b'
        status, headers, body = answer(base, "GET /v1/bots HTTP/1.1\r\nX-Request-ID: req-42")
        assert body["error"]["request_id"] == headers["x-request-id"] == "req-42"

    # Without the script's file (nginx run without the compose file's mount): no CORS, and
    # nginx still starts.
    (tmp_path / "no-cors").mkdir()
    with nginx_in_front(tmp_path / "no-cors", binary, upstream) as base:
        status, headers, _ = answer(base, "GET /v1/bots HTTP/1.1")
    assert status == 503 and "access-control-allow-origin" not in headers


def nginx_map_value(variable: str) -> set[str]:
    """The comma-separated list a ``map`` of docker/nginx.conf gives ``variable`` (its one
    non-empty value), as a set of lower-case names."""
    block = re.search(r"map \$\S+ \$" + variable + r" \{(.*?)\}", NGINX_CONF, re.S)
    assert block, f"no map for ${variable}"
    [value] = [v for v in re.findall(r'^\s*\S+\s+"([^"]*)";', block.group(1), re.M) if v]
    return {name.strip().lower() for name in value.split(",")}


def test_nginx_cors_lists_are_the_apps():
    """nginx's own answers (the api down) say what the app's would: the preflight's methods and
    headers and the headers a page may read are copies of django-cors-headers' settings, which
    nginx cannot read. They had drifted (``Chat-Stored``, exposed by the app since JSON turns
    can be stored later, was not in nginx's list) and only a test with nginx installed
    compared two of the three; this one needs no nginx."""
    from corsheaders.conf import conf

    assert nginx_map_value("chatbot_preflight_methods") == {
        m.lower() for m in conf.CORS_ALLOW_METHODS
    }
    assert nginx_map_value("chatbot_preflight_headers") == {
        h.lower() for h in conf.CORS_ALLOW_HEADERS
    }
    assert nginx_map_value("chatbot_cors_expose") == {h.lower() for h in conf.CORS_EXPOSE_HEADERS}


def test_a_preflight_while_the_api_is_down_lets_the_page_read_the_503(tmp_path):
    """A browser asks before a request with a key or JSON (a CORS preflight, OPTIONS) and sends
    it only on a 2xx: with the api down nginx answered the preflight 503, and the page saw a
    CORS error ("Failed to fetch"), never the 503 that said the service was unavailable. Now
    nginx answers an allowed origin's preflight itself, as the app would (its methods and
    headers, remembered for seconds only), and the request then gets the readable 503."""
    binary = nginx_binary()
    if binary is None:
        print("nginx not installed: structure checked only")
        return
    from corsheaders.conf import conf

    from tests.processes import raw_request, refusing_address

    def preflight(base: str, origin: str) -> tuple[int, dict[str, str]]:
        request = (
            f"OPTIONS /v1/chat HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\n"
            "Access-Control-Request-Method: POST\r\n"
            "Access-Control-Request-Headers: authorization, content-type, x-request-id\r\n"
            "Connection: close\r\n\r\n"
        )
        head = raw_request(base, request.encode(), timeout=30).split(b"\r\n\r\n")[0]
        lines = head.decode().split("\r\n")
        headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
        return int(lines[0].split()[1]), headers

    # the api is down: its address refuses
    with (
        refusing_address() as upstream,
        nginx_in_front(tmp_path, binary, upstream, origins=APP) as base,
    ):
        status, headers = preflight(base, APP)
        refused = preflight(base, "https://evil.example.net")
    assert status == 204, (status, headers)
    assert headers["access-control-allow-origin"] == APP
    allowed = {h.strip() for h in headers["access-control-allow-headers"].split(",")}
    assert allowed == set(conf.CORS_ALLOW_HEADERS), allowed  # the app's, no more
    methods = {m.strip() for m in headers["access-control-allow-methods"].split(",")}
    assert methods == set(conf.CORS_ALLOW_METHODS), methods
    assert 0 < int(headers["access-control-max-age"]) <= 10  # asked again once it is back
    # An origin not allowed gets no preflight from nginx either: still the 503, no CORS.
    assert refused[0] == 503 and "access-control-allow-origin" not in refused[1], refused


@pytest.mark.parametrize(
    "head",
    [
        b"GET /v1/bots HTTP/1.1 extra\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /v1/bots?q=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",  # 414
        b"GET /v1/bots HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n",  # 505
        b"POST /v1/bots HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n",  # 501
        b"GET /v1/bots HTTP/1.1\r\nConnection: close\r\n\r\n",  # no Host
        b"GET /v1/bots HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
    ],
    ids=[
        "request-line",
        "uri-too-long",
        "http-version",
        "transfer-coding",
        "no-host",
        "header-too-large",
    ],
)
def test_a_request_nginx_cannot_parse_is_400_in_the_envelope(tmp_path, head):
    binary = nginx_binary()
    if binary is None:
        print("nginx not installed: structure checked only")
        return
    from tests.processes import parse_answer, raw_request, refusing_address

    with refusing_address() as down, nginx_in_front(tmp_path, binary, down) as base:
        status, headers, body = parse_answer(raw_request(base, head, timeout=30))
    assert status == 400, body
    assert body["error"]["code"] == "invalid_request"
    assert body["error"]["request_id"] == headers["x-request-id"]


def test_compose_beat_writes_json_lines_only():
    """Celery beat prints a text banner (11 lines) unless told to be quiet; the worker drops
    its own when LOG_FORMAT=json (chatbot_site.celery), beat has no hook before it prints."""
    command = SERVICES["beat"]["command"]
    assert command.index("--quiet") < command.index("beat")

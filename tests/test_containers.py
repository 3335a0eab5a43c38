"""No Docker engine runs on the development machines, so the container setup is checked here:
the compose file's services, ports, env and health checks; the Dockerfile; the nginx config
(structure always, and `nginx -t` where nginx is installed)."""

from __future__ import annotations

import contextlib
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


def nginx_main_conf(tmp_path: Path, *, upstream: str, listen: str | None = None) -> Path:
    """docker/nginx.conf as the compose file serves it, with its upstream (and port) replaced."""
    (tmp_path / "logs").mkdir(exist_ok=True)
    conf = NGINX_CONF.replace("server api:8000", f"server {upstream}")
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
def nginx_in_front(tmp_path: Path, binary: str, upstream: str) -> Iterator[str]:
    """The compose file's nginx config served on a free port in front of ``upstream``
    (host:port): its base URL, once it listens."""
    from tests.processes import free_port, running, wait_for

    port = free_port()
    main = nginx_main_conf(tmp_path, upstream=upstream, listen=f"127.0.0.1:{port}")
    with running([binary, "-p", str(tmp_path), "-c", str(main)], dict(os.environ),
                 tmp_path / "nginx.log"):  # fmt: skip
        wait_for(lambda: port_open(port), timeout=20, what="nginx to listen")
        yield f"http://127.0.0.1:{port}"


def test_an_unreachable_api_is_503_in_the_envelope_behind_nginx(tmp_path):
    binary = nginx_binary()
    if binary is None:
        print("nginx not installed: structure checked only")
        return
    from tests.processes import free_port, parse_answer, raw_request

    with nginx_in_front(tmp_path, binary, f"127.0.0.1:{free_port()}") as base:
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


@pytest.mark.parametrize(
    "head",
    [
        b"GET /v1/bots HTTP/1.1 extra\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /v1/bots HTTP/1.1\r\nConnection: close\r\n\r\n",  # no Host
        b"GET /v1/bots HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
    ],
    ids=["request-line", "no-host", "header-too-large"],
)
def test_a_request_nginx_cannot_parse_is_400_in_the_envelope(tmp_path, head):
    binary = nginx_binary()
    if binary is None:
        print("nginx not installed: structure checked only")
        return
    from tests.processes import free_port, parse_answer, raw_request

    with nginx_in_front(tmp_path, binary, f"127.0.0.1:{free_port()}") as base:
        status, headers, body = parse_answer(raw_request(base, head, timeout=30))
    assert status == 400, body
    assert body["error"]["code"] == "invalid_request"
    assert body["error"]["request_id"] == headers["x-request-id"]


def test_compose_beat_writes_json_lines_only():
    """Celery beat prints a text banner (11 lines) unless told to be quiet; the worker drops
    its own when LOG_FORMAT=json (chatbot_site.celery), beat has no hook before it prints."""
    command = SERVICES["beat"]["command"]
    assert command.index("--quiet") < command.index("beat")

"""Fetching a URL for ingestion without becoming a proxy into our own network (SSRF).

- http and https only, no credentials in the URL, ports 80/443/8000-8999 style any — but the
  *address* decides: the host is resolved once and every address must be globally routable
  (no loopback, private, link-local — 169.254.169.254 included —, CGNAT 100.64/10, multicast,
  reserved, unspecified; IPv4-mapped, 6to4 and NAT64 forms are unwrapped and checked as IPv4).
  Decimal, octal and hex IPv4 spellings resolve to their address first, so they are caught too.
- The connection goes to the checked address (no second DNS lookup: DNS rebinding cannot swap
  it), with the original host name in ``Host`` and for TLS SNI and certificate checks.
- Every redirect hop is checked again (at most 5); the body is capped (``identity`` encoding
  only, so no decompression bomb) and so is the total time; content types are allow-listed.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from django.conf import settings

MAX_REDIRECTS = 5
ALLOWED_TYPES = (
    "text/html", "application/xhtml+xml", "text/plain", "text/markdown", "text/x-markdown",
    "application/json", "application/pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/octet-stream",
)  # fmt: skip
CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
SIXTOFOUR = ipaddress.ip_network("2002::/16")


class FetchError(Exception):
    """``message`` is for the document's owner; ``detail`` (what the socket raised, say) goes
    to the worker's log only."""

    def __init__(self, code: str, message: str, detail: str = ""):
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail


def _failed(exc: OSError | http.client.HTTPException) -> FetchError:
    if isinstance(exc, ssl.SSLError):
        message = "The secure connection to the server failed (its TLS certificate or handshake)."
    elif isinstance(exc, ConnectionRefusedError):
        message = "The server refused the connection."
    elif isinstance(exc, ConnectionError):
        message = "The server closed the connection."
    elif isinstance(exc, http.client.HTTPException):
        message = "The server's answer was not valid HTTP."
    else:
        message = "The URL could not be fetched."
    return FetchError("url_fetch_failed", message, type(exc).__name__)


def refused(message: str) -> FetchError:
    return FetchError("url_not_allowed", message)


@dataclass(frozen=True)
class Fetched:
    data: bytes
    content_type: str
    url: str
    charset: str | None = None  # the Content-Type's charset parameter, as the server wrote it


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in SIXTOFOUR and ip.sixtofour is not None:
        return ip.sixtofour
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def address_allowed(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and (inner := _embedded_ipv4(ip)) is not None:
        return address_allowed(inner)
    if getattr(settings, "URL_FETCH_ALLOW_LOOPBACK", False) and ip.is_loopback:
        return True  # tests only: local servers stand in for the internet
    if isinstance(ip, ipaddress.IPv4Address) and ip in CGNAT:
        return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def check_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an acceptable URL, else ``url_not_allowed``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise refused("The URL is malformed.") from None
    if parts.scheme not in ("http", "https"):
        raise refused("Only http and https URLs can be fetched.")
    if not parts.hostname:
        raise refused("The URL has no host.")
    if parts.username or parts.password:
        raise refused("URLs with credentials are not fetched.")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def resolve(host: str, port: int) -> list[str]:
    """Every address of ``host``; all must be public, or the URL is refused."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise FetchError("url_unreachable", f"The host {host!r} does not resolve.") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for address in addresses:
        if not address_allowed(ipaddress.ip_address(address.split("%")[0])):
            raise refused(f"The host {host!r} resolves to a non-public address.")
    if not addresses:
        raise FetchError("url_unreachable", f"The host {host!r} has no address.")
    return addresses


def check_submitted(url: str) -> None:
    """At submit time: refuse what is decidable now (scheme, literal or resolvable private
    hosts). A host that does not resolve yet is left to the worker."""
    _scheme, host, port = check_url(url)
    try:
        resolve(host, port)
    except FetchError as exc:
        if exc.code == "url_not_allowed":
            raise


class _PinnedConnection(http.client.HTTPConnection):
    """HTTP(S) to a fixed, already checked address; the host name only names it."""

    def __init__(self, host: str, port: int, address: str, *, tls: bool, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._address = address
        self._tls = tls

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), timeout=self.timeout)
        if self._tls:
            context = ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=self.host)
        self.sock = sock


def fetch(url: str) -> Fetched:
    deadline = time.monotonic() + settings.URL_FETCH_TOTAL_SECONDS
    limit = settings.URL_FETCH_MAX_BYTES
    current = url
    for _hop in range(MAX_REDIRECTS + 1):
        scheme, host, port = check_url(current)
        address = resolve(host, port)[0]
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError("url_timeout", "Fetching the URL took too long.")
        connection = _PinnedConnection(host, port, address, tls=scheme == "https",
                                       timeout=min(remaining, 30.0))  # fmt: skip
        parts = urlsplit(current)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            connection.request("GET", path, headers={
                "Host": parts.netloc.rsplit("@", 1)[-1],
                "User-Agent": "chatbot-service-ingest/1.0",
                "Accept-Encoding": "identity",
                "Accept": "text/html, text/plain, text/markdown, application/json, application/pdf, */*;q=0.5",
            })  # fmt: skip
            response = connection.getresponse()
            if response.status in (301, 302, 303, 307, 308):
                location = response.getheader("Location")
                response.close()
                if not location:
                    raise FetchError("url_fetch_failed", "A redirect without a Location.")
                current = urljoin(current, location)
                continue
            if response.status != 200:
                raise FetchError("url_fetch_failed", f"The server answered {response.status}.")
            if (response.getheader("Content-Encoding") or "identity").lower() != "identity":
                raise FetchError("url_fetch_failed", "The server sent an encoded body.")
            content_type = response.getheader("Content-Type") or "application/octet-stream"
            content_type = content_type.split(";")[0].strip().lower()
            charset = response.msg.get_content_charset()
            if content_type not in ALLOWED_TYPES:
                raise FetchError(
                    "unsupported_type", f"Content type {content_type} is not ingested."
                )
            declared = response.getheader("Content-Length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise FetchError("url_too_large", f"The document is larger than {limit:,} bytes.")
            body = bytearray()
            while True:
                if time.monotonic() > deadline:
                    raise FetchError("url_timeout", "Fetching the URL took too long.")
                piece = response.read1(65536)  # what has arrived: a slow drip meets the deadline
                if not piece:
                    break
                body += piece
                if len(body) > limit:
                    raise FetchError(
                        "url_too_large", f"The document is larger than {limit:,} bytes."
                    )
            return Fetched(bytes(body), content_type, current, charset)
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, TimeoutError | socket.timeout):
                raise FetchError("url_timeout", "Fetching the URL took too long.") from None
            raise _failed(exc) from None
        finally:
            connection.close()
    raise FetchError("too_many_redirects", f"More than {MAX_REDIRECTS} redirects.")

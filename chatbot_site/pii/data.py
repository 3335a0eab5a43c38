"""Masking JSON-like values and structlog events."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, MutableMapping
from typing import Any

from .scanner import mask
from .spans import ENTITIES, Span

# --- logging -----------------------------------------------------------------------------

_KEEP_SUFFIXES = ("_id", "timestamp", "level", "logger")


MAX_DATA_DEPTH = 32


def mask_data(value: Any, entities: Iterable[str] = ENTITIES, depth: int = 0) -> Any:
    """A JSON-like value with every string (keys included) masked, and every number that reads
    as PII replaced by its mask. Nesting deeper than MAX_DATA_DEPTH is refused (ValueError):
    callers validate depth first (:func:`data_depth`)."""
    if isinstance(value, str):
        return mask(value, entities)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        text = str(value)
        masked = mask(text, entities)
        return value if masked == text else masked
    if depth >= MAX_DATA_DEPTH:
        raise ValueError("nested too deeply to mask")
    if isinstance(value, dict):
        return {mask(str(k), entities): mask_data(v, entities, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_data(v, entities, depth + 1) for v in value]
    return value


def data_depth(value: Any) -> int:
    """How deeply a JSON-like value nests (iterative: any depth is safe to measure)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list | tuple):
            stack.extend((v, depth + 1) for v in item)
    return deepest


# Private networks (RFC 1918, IPv4 link-local, IPv6 unique-local and link-local): an address in
# one names a machine only inside its own network, no one's connection on the internet. In log
# lines they are the operator's own hosts (the provider's or embedding server's URL, the
# database, Redis, a container network, an internal URL a fetch refused), and masked they hid
# what an operator reads the line for: log lines keep them. (Loopback and unspecified addresses
# are never masked: chatbot_site.pii.ip.) Chat content, stored messages and provider requests
# still mask them: a user naming "my laptop, 192.168.1.23" chose IP masking for the bot. The
# documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) stand
# for public addresses in examples and are masked like them.
_PRIVATE = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "fc00::/7",
            "fe80::/10")  # fmt: skip
_PRIVATE_NETWORKS = tuple(ipaddress.ip_network(net) for net in _PRIVATE)
_PRIVATE_STARTS = ("10.", "172.", "192.168.", "169.254.", "f")  # the others are parsed for none


def private_network_address(span: Span, value: str) -> bool:
    """Whether ``span`` is an IP address of a private network (:data:`_PRIVATE_NETWORKS`)."""
    if span.entity != "IP_ADDRESS" or not value.lower().startswith(_PRIVATE_STARTS):
        return False
    try:
        address = ipaddress.ip_address(value)
    except ValueError:  # written in other digits or with other dots: masked
        return False
    return any(address in network for network in _PRIVATE_NETWORKS)


def _mask_value(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return mask(value, spare=private_network_address)
    if depth > 4:
        return value
    if isinstance(value, dict):
        return {
            k: v if str(k).endswith(_KEEP_SUFFIXES) else _mask_value(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_mask_value(v, depth + 1) for v in value)
    return value


def mask_pii_processor(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: masks every entity in every string value of the event (nested dicts,
    lists and tuples included, to the same depth as the secret scrubber), the ``event`` itself
    too; keys ending in ``_id``, ``timestamp``, ``level`` or ``logger`` are left alone, and so
    are addresses of private networks (:func:`private_network_address`)."""
    del logger, method_name
    for key, value in event_dict.items():
        if not str(key).endswith(_KEEP_SUFFIXES):
            event_dict[key] = _mask_value(value)
    return event_dict

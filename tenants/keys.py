"""API key format: ``cbk_<prefix>_<secret>``.

The prefix (12 hex characters) is public: it is stored, shown in listings and used to find the
key. The secret (43 url-safe characters, 256 bits) is shown once and stored only as SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

KEY_PREFIX = "cbk_"
_KEY_RE = re.compile(r"cbk_([0-9a-f]{12})_([A-Za-z0-9_\-]{32,128})")


@dataclass(frozen=True)
class NewKey:
    prefix: str
    secret: str

    @property
    def plaintext(self) -> str:
        return f"{KEY_PREFIX}{self.prefix}_{self.secret}"

    @property
    def hash(self) -> str:
        return hash_key(self.plaintext)


def generate_key() -> NewKey:
    # A prefix of twelve decimal digits (one in 280) can be a Luhn-valid card number, which the
    # log lines' PII masking hid ("api_key_prefix=[CREDIT_CARD]"): each prefix has a letter.
    prefix = secrets.token_hex(6)
    while prefix.isdigit():
        prefix = secrets.token_hex(6)
    return NewKey(prefix=prefix, secret=secrets.token_urlsafe(32))


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def parse_key(plaintext: str) -> str | None:
    """The prefix of a well-formed key, else None (no lookup needed for garbage)."""
    match = _KEY_RE.fullmatch(plaintext)
    return match.group(1) if match else None


def key_matches(plaintext: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_key(plaintext), stored_hash)

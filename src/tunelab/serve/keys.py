"""API tokens: how they are made, taken apart, hashed and verified.

A token reads ``tl_<key_id>_<secret>``. The ``key_id`` (8 lowercase letters/digits, not secret)
finds the key's row; the ``secret`` (``secrets.token_urlsafe(32)``: 256 random bits) proves
possession. Only ``sha256:<hex>`` of the secret is stored.

Why a plain SHA-256 and no slow KDF (bcrypt, scrypt, argon2): slow hashes exist to make guessing
*low-entropy passwords* expensive after a database leak. A 256-bit random secret cannot be guessed
at any hash speed (2**255 tries on average), so slowness would buy no security -- and it would cost
~100 ms of CPU on every request, capping the API's throughput. Hashing still matters: a leaked
database (or backup) yields no usable tokens.

    >>> token = make_token()
    >>> key_id, secret = parse_token(token.token)
    >>> verify_secret(secret, token.secret_hash)
    True
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass

from tunelab.errors import ConfigError

PREFIX = "tl"
KEY_ID_LENGTH = 8
_KEY_ID_ALPHABET = string.ascii_lowercase + string.digits  # no "_": it separates the token's parts
_KEY_ID_RE = re.compile(rf"^[a-z0-9]{{{KEY_ID_LENGTH}}}$")
_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{20,128}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
# Verifying against this when the key id is unknown makes unknown ids cost the same as wrong secrets.
_DUMMY_HASH = "sha256:" + "0" * 64


@dataclass(frozen=True)
class NewToken:
    """A freshly made token: ``token`` is shown to the user once; only ``secret_hash`` is stored."""

    key_id: str
    token: str
    secret_hash: str


def new_key_id() -> str:
    return "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(KEY_ID_LENGTH))


def hash_secret(secret: str) -> str:
    """``sha256:<hex>`` of the secret (see the module docstring for why SHA-256 is enough)."""
    return "sha256:" + hashlib.sha256(secret.encode("utf-8")).hexdigest()


def make_token(key_id: str | None = None) -> NewToken:
    """A new random token and the hash to store for it."""
    key_id = key_id or new_key_id()
    secret = secrets.token_urlsafe(32)
    return NewToken(key_id=key_id, token=f"{PREFIX}_{key_id}_{secret}", secret_hash=hash_secret(secret))


def parse_token(token: str | None) -> tuple[str, str] | None:
    """``(key_id, secret)`` from ``tl_<key_id>_<secret>``, or ``None`` if it is not shaped like one."""
    if not token:
        return None
    parts = token.strip().split("_", 2)  # the secret may itself contain "_"
    if len(parts) != 3 or parts[0] != PREFIX:
        return None
    key_id, secret = parts[1], parts[2]
    if not _KEY_ID_RE.fullmatch(key_id) or not _SECRET_RE.fullmatch(secret):
        return None
    return key_id, secret


def verify_secret(secret: str, stored_hash: str | None) -> bool:
    """Whether ``secret`` hashes to ``stored_hash``, compared in constant time.

    ``stored_hash=None`` (unknown key id) still does the same work, then answers ``False``.
    """
    candidate = hash_secret(secret).encode("ascii")
    ok = hmac.compare_digest(candidate, (stored_hash or _DUMMY_HASH).encode("ascii"))
    return ok and stored_hash is not None


def check_key_name(name: str) -> str:
    """A key name: 1-64 letters, digits, ``.``, ``_``, ``@`` or ``-``, starting with a letter or digit."""
    # fullmatch: with match, "$" matched before a last newline and "acme\n" was a key name
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ConfigError(
            f"key name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit (e.g. acme or acme-staging)"
        )
    return name

"""API tokens: format, hashing, constant-time verification, and authentication over a real store."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunelab.errors import ConfigError
from tunelab.serve.access import AccessControl, AccessError
from tunelab.serve.keys import check_key_name, hash_secret, make_token, parse_token, verify_secret
from tunelab.serve.store import open_store


@pytest.fixture
def access(tmp_path: Path):
    store = open_store(None, tmp_path)
    yield AccessControl(store)
    store.close()


def test_token_format_and_parse() -> None:
    new = make_token()
    prefix, key_id, secret = new.token.split("_", 2)
    assert prefix == "tl" and key_id == new.key_id and len(key_id) == 8
    assert len(secret) >= 43  # token_urlsafe(32): 256 bits
    assert parse_token(new.token) == (key_id, secret)
    assert new.secret_hash == hash_secret(secret) and secret not in new.secret_hash
    assert make_token().token != new.token


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        "tl_",
        "tl_abc_def",
        "xx_abcd1234_" + "a" * 43,
        "tl_ABCD1234_" + "a" * 43,
        "Bearer x",
        "tl_abcd1234\n_" + "a" * 43,  # "$" matched before the newline: key id "abcd1234\n"
    ],
)
def test_parse_rejects_malformed_tokens(token: str | None) -> None:
    assert parse_token(token) is None


def test_verify_secret() -> None:
    stored = hash_secret("s3cret-value-long-enough")
    assert verify_secret("s3cret-value-long-enough", stored)
    assert not verify_secret("s3cret-value-long-enougH", stored)
    assert not verify_secret("s3cret-value-long-enough", None)  # unknown key: same work, False


@pytest.mark.parametrize("name", ["acme", "acme-staging", "a", "team.ml_2", "ops@acme"])
def test_good_key_names(name: str) -> None:
    assert check_key_name(name) == name


@pytest.mark.parametrize("name", ["", " acme", "-acme", "acme corp", "x" * 65, "ac/me", "acme\n"])
def test_bad_key_names(name: str) -> None:
    with pytest.raises(ConfigError, match="key name"):
        check_key_name(name)


def test_authenticate_a_valid_token(access: AccessControl) -> None:
    record, token = access.create_key("acme", rate=None, quota=None)
    caller = access.authenticate(token)
    assert (caller.key_id, caller.name, caller.admin) == (record.key_id, "acme", False)
    assert access.authenticate(f"  {token} ").key_id == record.key_id


def test_missing_wrong_unknown_and_revoked(access: AccessControl) -> None:
    _, token = access.create_key("acme", rate=None, quota=None)
    key_id, secret = parse_token(token)  # type: ignore[misc]
    cases = {
        None: (401, "missing_key"),
        "": (401, "missing_key"),
        "not-a-token": (401, "invalid_key"),
        f"tl_{key_id}_{secret[:-1]}x": (401, "invalid_key"),  # wrong secret
        f"tl_zzzzzzzz_{secret}": (401, "invalid_key"),  # unknown id
    }
    messages = set()
    for bad, (status, code) in cases.items():
        with pytest.raises(AccessError) as err:
            access.authenticate(bad)
        assert (err.value.status, err.value.code) == (status, code)
        assert err.value.to_body() == {"error": {"code": code, "message": err.value.message}}
        assert err.value.headers() == {"WWW-Authenticate": "Bearer"}
        if code == "invalid_key":
            messages.add(err.value.message)
    assert len(messages) == 1  # an unknown id and a wrong secret are indistinguishable
    access.revoke_key("acme")
    with pytest.raises(AccessError) as err:
        access.authenticate(token)
    assert (err.value.status, err.value.code) == (403, "revoked_key")
    assert "acme" in err.value.message and "revoked" in err.value.message


def test_admin_required(access: AccessControl) -> None:
    _, user = access.create_key("user", rate=None, quota=None)
    _, admin = access.create_key("ops", rate=None, quota=None, admin=True)
    access.require_admin(access.authenticate(admin))
    with pytest.raises(AccessError) as err:
        access.require_admin(access.authenticate(user))
    assert (err.value.status, err.value.code) == (403, "admin_required")


def test_the_database_never_holds_the_plain_secret(tmp_path: Path) -> None:
    store = open_store(None, tmp_path)
    access = AccessControl(store)
    tokens = [access.create_key(f"k{i}", rate=None, quota=None)[1] for i in range(5)]
    access.revoke_key("k0")
    secrets_ = [t.split("_", 2)[2] for t in tokens]
    files = sorted(tmp_path.glob("tunelab.db*"))  # the database and its WAL
    blob = b"".join(f.read_bytes() for f in files)
    store.close()  # checkpoints the WAL into the main file
    blob += (tmp_path / "tunelab.db").read_bytes()
    assert blob and all(s.encode() not in blob for s in secrets_)
    assert all(t.encode() not in blob for t in tokens)
    assert hash_secret(secrets_[1]).encode() in blob  # it does hold the hash
    assert (tmp_path / "tunelab.db").stat().st_mode & 0o077 == 0  # owner-only file

"""``/v1/keys`` (admin only): create, list and revoke API keys over HTTP.

Same operations as ``tunelab keys``; a revoked key is refused (403) from its next request on.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from tunelab.serve.deps import Admin, State
from tunelab.serve.responses import AUTH, JSON_BODY, error_responses
from tunelab.serve.schemas import KeyCreated, KeyCreateRequest, KeyInfo, KeyList

router = APIRouter(prefix="/keys", tags=["keys (admin)"])


@router.post(
    "", response_model=KeyCreated, status_code=201, responses=error_responses(*AUTH, *JSON_BODY, 409)
)
async def create_key(body: KeyCreateRequest, state: State, admin: Admin) -> KeyCreated:
    """Create a key; the response holds the token, shown this once (only its hash is stored)."""
    from tunelab.serve.limits import Quota, Rate

    # ConfigError -> 422 naming the format; "" too (as a falsy value it made an unlimited key)
    rate = Rate.parse(body.rate) if body.rate is not None else None
    quota = Quota.parse(body.quota) if body.quota is not None else None
    record, token = await run_in_threadpool(
        lambda: state.access.create_key(body.name, rate=rate, quota=quota, admin=body.admin)
    )
    return KeyCreated(**record.to_dict(), token=token)


@router.get("", response_model=KeyList, responses=error_responses(*AUTH))
async def list_keys(state: State, admin: Admin) -> KeyList:
    records = await run_in_threadpool(state.access.list_keys)
    return KeyList(keys=[KeyInfo(**r.to_dict()) for r in records])


@router.delete("/{name}", response_model=KeyInfo, responses=error_responses(*AUTH, 404, 422))
async def revoke_key(name: str, state: State, admin: Admin) -> KeyInfo:
    """Revoke the active key with this name (or id)."""
    record = await run_in_threadpool(state.access.revoke_key, name)
    return KeyInfo(**record.to_dict())

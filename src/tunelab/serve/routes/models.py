"""``/v1/models``: what is served, and (admin) loading, switching and retiring versions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from starlette.concurrency import run_in_threadpool

from tunelab.serve.deps import Admin, MaybeCaller, State
from tunelab.serve.model_roots import confine
from tunelab.serve.registry import SERVED_NAME_PATTERN, ModelRegistry, ModelVersion
from tunelab.serve.responses import AUTH, JSON_BODY, error_responses
from tunelab.serve.schemas import (
    ActivateRequest,
    LoadVersionRequest,
    ModelInfo,
    ModelList,
    ModelVersionInfo,
)

router = APIRouter(prefix="/models", tags=["models"])
# Admin operations. Without a body (retire): no 400. With a JSON body (load, activate), 400 is
# declared by JSON_BODY: malformed JSON, and for a load also a folder that cannot be loaded (a
# TunelabError); a path outside the allowed roots is a 403, declared by AUTH.
ADMIN_ERRORS = error_responses(*AUTH, 404, 409, 422)
ADMIN_BODY_ERRORS = error_responses(*AUTH, *JSON_BODY, 404, 409)


def version_info(mv: ModelVersion, active: str, *, admin: bool = True) -> ModelVersionInfo:
    return ModelVersionInfo(
        version=mv.version,
        format=mv.format,
        task=mv.task,
        labels=mv.labels,
        source=mv.source if admin else None,
        run=mv.run_name,
        active=mv.version == active,
        in_flight=mv.in_flight,
        loaded_at=mv.loaded_at,
    )


def model_info(registry: ModelRegistry, name: str, *, admin: bool = True) -> ModelInfo:
    """What is served under ``name``; the folders it was loaded from (server paths) only for ``admin``."""
    active = registry.active(name)
    current = registry.get(name)
    return ModelInfo(
        name=name,
        active=active,
        format=current.format,
        task=current.task,
        labels=current.labels,
        source=current.source if admin else None,
        versions=[version_info(mv, active, admin=admin) for mv in registry.versions(name)],
    )


@router.get("", response_model=ModelList, responses=error_responses(*AUTH))
async def list_models(state: State, caller: MaybeCaller) -> ModelList:
    """Every served model with its versions; ``active`` is the one unpinned requests get.

    ``source`` (the server folder a version was loaded from) is shown to admin keys only.
    """
    admin = _is_admin(caller)
    return ModelList(
        models=[model_info(state.registry, name, admin=admin) for name in state.registry.names()]
    )


@router.get("/{name}", response_model=ModelInfo, responses=error_responses(*AUTH, 404, 422))
async def get_model(name: str, state: State, caller: MaybeCaller) -> ModelInfo:
    """One served model with its versions (``source`` for admin keys only)."""
    state.registry.get(name)  # 404 naming the served models
    return model_info(state.registry, name, admin=_is_admin(caller))


def _is_admin(caller: object) -> bool:
    return bool(getattr(caller, "admin", False))  # None with --no-auth and no key: not an admin


@router.post("/{name}/versions", response_model=ModelInfo, status_code=201, responses=ADMIN_BODY_ERRORS)
async def load_version(
    name: Annotated[
        str,
        Path(pattern=SERVED_NAME_PATTERN, description="a letter or digit, then up to 63 of [A-Za-z0-9_.-]"),
    ],
    body: LoadVersionRequest,
    state: State,
    admin: Admin,
) -> ModelInfo:
    """Load a run or artifact as a new version (serving goes on meanwhile); activate it by default.

    A new name starts a new model. In-flight requests finish on the version they started with.
    ``path`` must lie under one of the server's ``--model-root`` folders (default ``runs``), after
    ``..`` and symlinks are resolved; anything else is a 403 naming the allowed roots.
    """
    # Only from under --model-root (else a 403, see error_handlers); the loader gets the resolved
    # path that was checked.
    path = await run_in_threadpool(confine, body.path, state.settings.model_roots)
    await state.registry.load(name, str(path), version=body.version, activate=body.activate)
    return model_info(state.registry, name)


@router.post("/{name}/activate", response_model=ModelInfo, responses=ADMIN_BODY_ERRORS)
async def activate(name: str, body: ActivateRequest, state: State, admin: Admin) -> ModelInfo:
    """Switch unpinned requests to ``version`` (an atomic swap; nothing in flight is dropped)."""
    await state.registry.activate(name, body.version)
    return model_info(state.registry, name)


@router.delete("/{name}/versions/{version}", response_model=ModelInfo, responses=ADMIN_ERRORS)
async def retire(name: str, version: str, state: State, admin: Admin) -> ModelInfo:
    """Unload a version that is not active, after its in-flight requests are answered."""
    await state.registry.retire(name, version)
    return model_info(state.registry, name)

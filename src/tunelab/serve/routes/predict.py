"""``POST /v1/models/{name}/predict``: a batch of texts (or text pairs) in, one result per item out.

The order of checks is the order of cost: body size (middleware), JSON syntax, key, schema,
model, per-text limits, then rate and quota (which reserve quota), and only then the model.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from tunelab.serve.deps import Context, MaybeCaller, State
from tunelab.serve.disconnect import unless_client_leaves
from tunelab.serve.request_limits import RequestLimitError, check_input_kind, check_texts
from tunelab.serve.responses import error_responses
from tunelab.serve.schemas import PredictRequest, PredictResponse, UsageCount

log = logging.getLogger(__name__)
router = APIRouter(tags=["predict"])

ERRORS = error_responses(
    400,
    401,
    403,
    404,
    413,
    415,
    422,
    429,
    503,
    s400="malformed JSON",
    s403="revoked key",
    s404="unknown model or version",
    s413="body or text count over the limit",
    s422="invalid body, a text over the character limit, or texts/pairs not what the model takes",
    s503="the key and usage database is unreachable, or usage could not be recorded (nothing was billed)",
)


@router.post(
    "/models/{name}/predict",
    response_model=PredictResponse,
    response_model_exclude_none=True,  # single-label results carry no labels/scores lists
    responses=ERRORS,  # type: ignore[arg-type]
)
async def predict(
    request: Request,
    name: str,
    body: PredictRequest,
    state: State,
    ctx: Context,
    caller: MaybeCaller,
    version: Annotated[str | None, Query(description="pin a version (the body field wins)")] = None,
) -> PredictResponse:
    """Classify, or find the entities of, up to ``max_texts_per_request`` texts (active or pinned version).

    A model trained on text pairs takes ``pairs`` (``[[text, text_pair], ...]``) instead of
    ``texts``; sending the other field is a 422 naming the one to use. Concurrent requests are
    batched on the server, so many small requests cost little more than one large one. ``usage``
    counts the texts (a pair is one) and the tokens the model saw (after truncation; the windows of
    a long NER text count its tokens once; a zero-shot NLI model reads a text once per label, so its
    tokens are those of every pair it read).
    """
    ctx.texts = body.size
    settings = state.settings
    if caller is not None:
        # The key's rate first: requests refused below (an unknown model, an empty text) were never
        # rate-limited, and each wrote a usage row under the store's write lock. (A body that fails
        # the schema never reaches this line: the validation error handler takes the rate then.)
        await run_in_threadpool(state.access.admit_rate, caller)
    if version == "":
        raise RequestLimitError("version: empty; leave it out for the active version", status=422,
                                code="invalid_parameter")  # fmt: skip
    async with state.registry.use(name, body.version or version) as mv:
        ctx.version = mv.version
        check_input_kind(name, mv.pair_column, has_pairs=body.pairs is not None)
        items, field = (body.texts, "texts") if body.pairs is None else (body.pairs, "pairs")
        check_texts(
            items or [],
            max_texts=settings.max_texts_per_request,
            max_chars=settings.max_chars_per_text,
            field=field,
        )
        # Each key's texts queued or running are capped (429 past it), and the batcher takes the keys'
        # lanes in turn, so one key's big requests cannot hold everyone else's back.
        holding = (
            state.in_flight.hold(caller.key_id, caller.name, body.size)
            if caller is not None
            else contextlib.nullcontext()
        )
        with holding:
            if caller is not None:
                await run_in_threadpool(
                    lambda: state.access.admit(caller, body.size, request_id=ctx.request_id, rate=False)
                )
            lane = None if caller is None else caller.key_id
            if log.isEnabledFor(logging.DEBUG):
                log.debug("predict %s@%s %s=%r", name, mv.version, field, items)  # masked by the log filter
            if body.pairs is None:
                work = mv.batcher.submit(body.texts or [], top_k=body.top_k, lane=lane)
            else:
                texts, pairs = [a for a, _ in body.pairs], [b for _, b in body.pairs]
                work = mv.batcher.submit(texts, pairs=pairs, top_k=body.top_k, lane=lane)
            out = await unless_client_leaves(request.receive, work)
    ctx.tokens = sum(out.tokens)
    # The task's: ClassificationResult, EntityResult, or a plug-in task's own, which
    # PredictResponse passes on as that schema's JSON (its None fields kept: exclude_none above
    # drops only the built-in models' unset lists).
    schema = mv.result_schema
    return PredictResponse(
        model=name,
        version=mv.version,
        format=mv.format,
        task=mv.task,
        results=[schema.model_validate(r) for r in out.results],
        usage=UsageCount(texts=body.size, tokens=ctx.tokens),
    )

"""Request and response bodies of the support bot's routes (``/v1/apps/support/...``).

The message's text is checked like a predict text: blank or not encodable is a 422 here, over
``max_chars_per_text`` a 422 in the route (the limit is the server's), a body over ``--max-body``
a 413 before anything is read.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import PurePath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from tunelab.serve.schemas import Text, _text_problem

# Caller-chosen ids are stored and shown to agents: a plain token, not free text.
CONVERSATION_ID = r"^[A-Za-z0-9._:@-]{1,128}$"
AGENT = r"^[^\x00-\x1f\x7f]{1,64}$"
NO_NUL = "contains a NUL character (U+0000), which the database cannot store; remove it"


def _no_nul(value: str | None, field: str) -> str | None:
    if value is not None and "\x00" in value:
        raise ValueError(f"{field} {NO_NUL}")
    return value


class MessageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conversation_id: str | None = Field(
        None,
        pattern=CONVERSATION_ID,
        examples=["chat-8f2c"],
        description="the conversation this message continues (letters, digits, . _ : @ -; up to 128); "
        "omitted: a new conversation, whose id the reply carries",
    )
    text: Text = Field(examples=["I ordered a card last week"], description="the user's message")

    @field_validator("text")
    @classmethod
    def _usable(cls, text: str) -> str:
        problem = _text_problem(text, "text")
        if problem:
            raise ValueError(problem)
        return _no_nul(text, "text")  # type: ignore[return-value]


class PassageOut(BaseModel):
    text: str
    title: str | None = None
    source: str | None = Field(default=None, description="the knowledge file's name and line, `faq.md:12`")
    score: float

    @field_validator("source")
    @classmethod
    def _file_name_only(cls, value: str | None) -> str | None:
        """The file's name and line only: the path the bot was built from is the server's (every
        knowledge reply handed it to every client, while ``GET /v1/apps/support`` hid it)."""
        if value is None or "://" in value:
            return value
        return PurePath(value).name or value


class MessageResponse(BaseModel):
    bot: str
    conversation_id: str
    reply: str = Field(description="the text to show the user")
    kind: Literal["answer", "knowledge", "handoff"]
    intent: str | None = Field(
        description="the intent the message resolved to (null for a hand-off without one)"
    )
    confidence: float = Field(description="calibrated probability of intent (0..1)")
    passages: list[PassageOut] = Field(description="knowledge passages, best first (kind knowledge only)")
    handoff_id: str | None = Field(description="the ticket a hand-off created, else null")
    used_context: bool = Field(description="the earlier messages of the conversation were needed")


class BotInfo(BaseModel):
    name: str
    source: str | None = Field(None, description="the bot folder (admin keys only, else null)")
    loaded_at: datetime


class SupportInfo(BaseModel):
    bots: list[BotInfo]
    conversation_ttl_s: float = Field(description="how long a conversation's turns are kept as context")
    webhook: bool = Field(description="new tickets are POSTed to a webhook")


class Resolution(BaseModel):
    intent: str | None
    answer: str | None


class TicketOut(BaseModel):
    id: str
    bot: str
    conversation_id: str
    text: str = Field(description="the message that was handed off")
    conversation: list[dict[str, Any]] = Field(
        description="the conversation so far, oldest first: text, reply, kind, intent, at"
    )
    reason: str = Field(description="why the bot handed off")
    candidates: list[dict[str, Any]] = Field(description="the bot's top intents: intent, confidence")
    status: Literal["open", "claimed", "resolved"]
    created_at: datetime
    updated_at: datetime
    claimed_by: str | None
    claimed_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolution: Resolution | None


class TicketList(BaseModel):
    tickets: list[TicketOut]


class ClaimRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: str | None = Field(
        None, pattern=AGENT, description="who takes it (default: the key's name)", examples=["ann"]
    )


class ResolveRequest(BaseModel):
    """The right intent (becomes the example's label), an answer given instead, or both."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"anyOf": [{"required": ["intent"]}, {"required": ["answer"]}]}
    )

    intent: str | None = Field(
        None, min_length=1, max_length=200, pattern=r"^\S(.*\S)?$", examples=["card_arrival"]
    )
    answer: str | None = Field(None, min_length=1, max_length=10_000, pattern=r"\S")
    agent: str | None = Field(None, pattern=AGENT, description="who resolved it (default: the key's name)")
    new_intent: bool = Field(
        False,
        description="the intent is new, not one of the bot's: store it as given (it becomes a new class "
        "when the next model is trained on export-feedback); without this an unknown intent is a 422",
    )

    @field_validator("intent", "answer")
    @classmethod
    def _storable(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _no_nul(value, str(info.field_name))

    @model_validator(mode="after")
    def _one_of(self) -> ResolveRequest:
        if self.intent is None and self.answer is None:
            raise ValueError('give "intent" (the right intent) or "answer" (what the agent replied), or both')
        return self


__all__ = [
    "BotInfo",
    "ClaimRequest",
    "MessageRequest",
    "MessageResponse",
    "PassageOut",
    "ResolveRequest",
    "SupportInfo",
    "TicketList",
    "TicketOut",
]

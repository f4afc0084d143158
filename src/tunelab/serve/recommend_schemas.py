"""Request and response bodies of the recommender's routes (``/v1/apps/recommend/...``).

Ids (users', items') are strings of 1 to 200 characters with a visible character, no NUL
and valid Unicode: the recommender keeps them in SQLite, where a lone surrogate cannot be encoded
(that would be a 500, not the client's 422). An item's fields are the recommender's text fields
(title, description, tags, ...); which of them make its text is the recommender's config, so an
item whose text comes out empty is refused by the recommender itself (422 naming the item).

Events are checked one by one (``EventIn``) in the route, not by the request's schema: one bad
event is reported in its own result and never refuses the others.
"""

from __future__ import annotations

import contextlib
import math
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from tunelab.serve.inputs import EPOCH_SECONDS_MAX, check_epoch_number
from tunelab.serve.schemas import MAX_LIST_ITEMS

MAX_ID_CHARS = 200
MAX_K = 1000  # the longest ranking one request may ask for (the Recommender's own limit)

ID_SCHEMA = {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS, "pattern": r"^[^\x00]*\S[^\x00]*$"}
Id = Annotated[str, WithJsonSchema(ID_SCHEMA)]
# Capped like every list a request sends (schemas.MAX_LIST_ITEMS): uncapped, a 0.8 MB body of one
# item with 120,000 tags or 60,000 fields held the event loop for 0.7-2 s of schema errors.
FieldValue = str | int | float | bool | Annotated[list[str], Field(max_length=MAX_LIST_ITEMS)] | None
MAX_FIELDS = 200  # fields of one item


def id_problem(value: str) -> str | None:
    """Why ``value`` cannot be an id, or None."""
    # Imported here: tunelab.data imports pandas, which the service's schemas do not need otherwise.
    from tunelab.data.scripts import has_visible_text

    # not strip(): an id of zero-width spaces (U+200B) is empty as the build reads a file's ids
    if not has_visible_text(value):
        return "is empty; give an id with some visible characters"
    if len(value) > MAX_ID_CHARS:
        return f"has {len(value):,} characters, over the limit of {MAX_ID_CHARS}"
    if "\x00" in value:
        return "contains a NUL character"
    return unicode_problem(value)


def unicode_problem(text: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"is not valid Unicode (a lone surrogate {text[exc.start]!a} at character {exc.start})"
    return None


def _check_fields(fields: dict[str, FieldValue]) -> dict[str, FieldValue]:
    for name, value in fields.items():
        if isinstance(value, float) and not math.isfinite(value):
            # JSON's NaN/Infinity (Python's json reads them): the item was added with the text "inf",
            # and live.sqlite held JSON no other reader takes; events' ratings are refused so too
            raise ValueError(f"field {name[:50]!r} must be a finite number or text, not {value}")
        for text in [name, *(value if isinstance(value, list) else [value])]:
            if not isinstance(text, str):
                continue
            problem = "contains a NUL character" if "\x00" in text else unicode_problem(text)
            if problem:
                raise ValueError(f"field {name[:50]!r} {problem}")
    return fields


def _few_fields(value: Any) -> Any:
    """Before the fields are validated one by one: pydantic checks a dict's length only after its
    items, so 60,000 bad fields made 300,000 errors (2 s of the event loop) before the cap."""
    if isinstance(value, dict) and len(value) > MAX_FIELDS:
        raise ValueError(f"{len(value):,} fields; an item takes at most {MAX_FIELDS}")
    if isinstance(value, dict):
        # the lists together, not each: 50 fields of 10,000 numbers were 500,000 errors
        listed = sum(len(v) for v in value.values() if isinstance(v, list))
        if listed > MAX_LIST_ITEMS:
            raise ValueError(
                f"{listed:,} values in the fields' lists; an item takes at most {MAX_LIST_ITEMS:,}"
            )
    return value


# An item's fields, counted before pydantic checks them one by one (``_few_fields``).
Fields = Annotated[dict[str, FieldValue], BeforeValidator(_few_fields)]


def _check_id(value: str, what: str) -> str:
    """The id without surrounding spaces (the Recommender strips them too), or a ValueError."""
    problem = id_problem(value)
    if problem:
        raise ValueError(f"{what} {problem}")
    return value.strip()


def _item_id(value: str) -> str:
    """A new item's id checked, as the Recommender stores it: "7.0" is "7" (``id_text``).

    Answered as sent, {"added": ["7.0"]} named an id the recommender does not have: it ranks the
    item as "7", and a second POST of "7.0" was refused as "item(s) '7' already exist".
    """
    from tunelab.apps.recommend.data import id_text  # the builds' one rule for ids (see EventIn)

    return id_text(_check_id(value, "item_id"))  # never blank: _check_id refused that


# -- rankings --------------------------------------------------------------------------------------


class RankedItemOut(BaseModel):
    item_id: str
    score: float = Field(description="the blended score: higher ranks first (comparable within one ranking)")
    text: str = Field(description="the item's text, as the recommender reads it")
    reasons: list[str] = Field(
        description="ids of the user's items that matched it most (empty in a fallback)"
    )


class RankingOut(BaseModel):
    recommender: str
    user_id: str
    items: list[RankedItemOut] = Field(description="best first; fewer than k when fewer items are left")
    fallback: bool = Field(description="true when the user is unknown: popular and fresh items instead")
    fallback_reason: str | None = Field(description="why the fallback was used (null otherwise)")


# -- items -----------------------------------------------------------------------------------------


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_id: Id = Field(description="new to the recommender: an id it has is a 409, never overwritten")
    fields: Fields = Field(
        min_length=1,
        max_length=MAX_FIELDS,
        description="the item's fields (title, description, tags, ...); its text fields make the text",
        examples=[{"title": "Arrival (2016)", "genres": "Drama|Sci-Fi"}],
    )

    @field_validator("item_id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _item_id(value)

    @field_validator("fields")
    @classmethod
    def _fields(cls, fields: dict[str, FieldValue]) -> dict[str, FieldValue]:
        return _check_fields(fields)

    def chars(self) -> int:
        """Characters of text in its fields (what ``--max-chars`` limits)."""
        total = 0
        for value in self.fields.values():
            for text in value if isinstance(value, list) else [value]:
                total += len(text) if isinstance(text, str) else 0
        return total


_ONE_OR_MANY = {
    "oneOf": [
        {"required": ["item_id", "fields"], "properties": {"item_id": {"type": "string"}}},
        {"required": ["items"], "properties": {"items": {"type": "array"}}},
    ]
}


class ItemsRequest(BaseModel):
    """One item (``item_id``, ``fields``) or a batch (``items``), never both."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_ONE_OR_MANY)

    item_id: Id | None = Field(None, description="one item's id (or send items)")
    fields: Fields | None = Field(None, max_length=MAX_FIELDS, description="one item's fields (with item_id)")
    items: list[ItemIn] | None = Field(
        None,
        min_length=1,
        max_length=MAX_LIST_ITEMS,
        description="a batch: added all or nothing (as far as the ids go)",
    )

    @field_validator("item_id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        return None if value is None else _item_id(value)

    @field_validator("fields")
    @classmethod
    def _fields(cls, fields: dict[str, FieldValue] | None) -> dict[str, FieldValue] | None:
        if fields is not None and not fields:
            raise ValueError("fields is empty; give the item's text fields (title, description, ...)")
        return None if fields is None else _check_fields(fields)

    @model_validator(mode="after")
    def _one_form(self) -> ItemsRequest:
        if self.items is not None:
            if self.item_id is not None or self.fields is not None:
                raise ValueError("give item_id and fields, or items, not both")
        elif self.item_id is None or self.fields is None:
            missing = "item_id" if self.item_id is None else "fields"
            raise ValueError(f"{missing} is missing: give item_id and fields (or items for a batch)")
        return self

    def all(self) -> list[ItemIn]:
        if self.items is not None:
            return self.items
        return [ItemIn.model_construct(item_id=self.item_id, fields=self.fields)]  # checked above


class ItemsAdded(BaseModel):
    recommender: str
    added: list[str] = Field(description="the new items' ids, rankable at once")


# -- events ----------------------------------------------------------------------------------------

EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["user_id", "item_id"],
    "properties": {
        "user_id": {"anyOf": [ID_SCHEMA, {"type": "number"}], "description": "a whole number is its digits"},
        "item_id": {
            "anyOf": [ID_SCHEMA, {"type": "number"}],
            "description": "an item the recommender has (else rejected: unknown_item)",
        },
        "time": {
            "anyOf": [{"type": "string"}, {"type": "number"}, {"type": "null"}],
            "description": "ISO 8601 (no offset: UTC) or epoch seconds; default now",
        },
        "rating": {"type": ["number", "null"]},
        "event": {
            "type": ["string", "number", "null"],
            "maxLength": 50,
            "description": "click, purchase, ... or a numeric code",
        },
    },
}


class EventIn(BaseModel):
    """One interaction; checked on its own (a bad one is rejected in its result, not the request)."""

    model_config = ConfigDict(extra="forbid")

    user_id: str
    item_id: str
    time: float | str | None = None
    rating: float | None = None
    event: str | None = Field(None, min_length=1, max_length=50)

    @field_validator("user_id", "item_id", mode="before")
    @classmethod
    def _whole_number_ids(cls, value: Any) -> Any:
        # MovieLens-style ids are numbers in the files; a client sending {"user_id": 42} means "42",
        # and 42.0 or "42.0" (from a float column) means it too, as the build reads such cells
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            return value
        if isinstance(value, float) and not value.is_integer():
            return value  # 4.5 names no id: refused as not a string
        from tunelab.apps.recommend.data import id_text  # the builds' one rule for ids

        return id_text(value) or value  # blank: left for the field's own check

    @field_validator("event", mode="before")
    @classmethod
    def _numeric_event_codes(cls, value: Any) -> Any:
        # Event codes may be numbers in the files (the build reads the cell as text, and a rule
        # `event in [1, 2]` compares numbers as numbers): {"event": 1} is the code "1".
        if isinstance(value, bool):
            return value  # refused by the str field: true is no event code
        if isinstance(value, float) and math.isfinite(value):
            return str(int(value)) if value.is_integer() else str(value)
        return str(value) if isinstance(value, int) else value

    @field_validator("user_id", "item_id")
    @classmethod
    def _ids(cls, value: str, info: Any) -> str:
        return _check_id(value, info.field_name)

    @field_validator("time", mode="before")
    @classmethod
    def _no_boolean_time(cls, value: Any) -> Any:
        # before the float field: it would take true as 1.0, a moment in 1970
        if isinstance(value, bool):
            check_epoch_number(value)
        return value

    @field_validator("time")
    @classmethod
    def _time(cls, value: float | str | None) -> float | None:
        if value is None:
            return None
        if isinstance(value, str):
            with contextlib.suppress(ValueError):  # "1700000000": epoch seconds as a string
                value = float(value.strip())
        if not isinstance(value, str):
            check_epoch_number(value)  # 20240315: a date, not 1970 (as files and the monitor refuse)
        if isinstance(value, str):
            try:
                when = datetime.fromisoformat(value.strip())
            except ValueError:
                raise ValueError(f"time {value[:40]!r} is not ISO 8601 or epoch seconds") from None
            when = when if when.tzinfo else when.replace(tzinfo=UTC)
            try:
                return when.timestamp()
            except (OverflowError, ValueError):
                raise ValueError(f"time {value[:40]!r} is out of range") from None
        if not math.isfinite(value) or not 0 <= value < EPOCH_SECONDS_MAX:
            raise ValueError(f"time {value!r} is not epoch seconds (milliseconds? divide by 1000)")
        return float(value)

    @field_validator("rating")
    @classmethod
    def _rating(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("rating must be a finite number")
        return value

    @field_validator("event")
    @classmethod
    def _event(cls, value: str | None) -> str | None:
        problem = None if value is None else unicode_problem(value)
        if problem or (value is not None and "\x00" in value):
            raise ValueError(f"event {problem or 'contains a NUL character'}")
        return value


class EventsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[Any] = Field(
        min_length=1,
        max_length=MAX_LIST_ITEMS,
        description="each recorded on its own: a bad one is rejected in its result, the others still count",
        json_schema_extra={"items": EVENT_SCHEMA},
    )


class EventResult(BaseModel):
    index: int = Field(description="the event's position in the request")
    status: str = Field(description="recorded, or rejected")
    code: str | None = Field(None, description="why rejected: invalid_event, unknown_item, internal_error")
    message: str | None = Field(None, description="one line naming what is wrong")


class EventsRecorded(BaseModel):
    recommender: str
    received: int
    recorded: int = Field(description="what is billed; the users' next rankings reflect them")
    rejected: int
    results: list[EventResult] = Field(description="one per event, in order")


# -- listing ---------------------------------------------------------------------------------------


class RecommenderInfo(BaseModel):
    name: str
    source: str | None = Field(None, description="the folder it was loaded from (admin keys only, else null)")
    loaded_at: datetime
    info: dict[str, Any] = Field(
        description="the recommender's own: n_items, n_users, built, search, ...; its folder, config and "
        "text model for admin keys only"
    )


class RecommenderList(BaseModel):
    recommenders: list[RecommenderInfo]


__all__ = [
    "MAX_K",
    "EventIn",
    "EventResult",
    "EventsRecorded",
    "EventsRequest",
    "ItemIn",
    "ItemsAdded",
    "ItemsRequest",
    "RankedItemOut",
    "RankingOut",
    "RecommenderInfo",
    "RecommenderList",
    "id_problem",
]

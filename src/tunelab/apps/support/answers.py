"""The support bot's answers file: a reply template per intent, and the slots templates fill.

```yaml
fallback: "Let me find someone who can help with that."   # optional: reply when a slot is missing
handoff: "A colleague will reply here shortly."            # optional: the reply of a hand-off
slots:
  amount: '(?:[$£€]\\s?)\\d+(?:[.,]\\d{1,2})?'             # regex: group 1 if it has one, else the match
  date: {entity: DATE}                                     # filled by the NER run's DATE entities
intents:
  card_arrival:
    answer: "New cards arrive within 5 working days."
  transfer_not_received_by_recipient:
    answer: "A transfer of {amount} can take up to one working day."
    fallback: "A transfer can take up to one working day." # this intent's reply when a slot is missing
```

Templates are Python format strings restricted to plain slot names (``{amount}``; ``{{`` for a
literal brace). Everything is checked when the file is read and again against the intent model
and NER run when a bot is built, so a typo fails the build in one line, never a reply.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tunelab.errors import ConfigError
from tunelab.yaml_names import load_names_yaml

#: What a hand-off replies when the answers file has no ``handoff`` of its own.
DEFAULT_HANDOFF = "I'm passing this to a colleague who can help; they will reply here."
_FIELDS = ("intents", "slots", "fallback", "handoff")


@dataclass(frozen=True)
class Slot:
    """Where a slot's value comes from: a regex over the message, or an NER entity type.

    Attributes:
        name: the name templates use (``{amount}``).
        pattern: the compiled regex (group 1 if it has groups, else the whole match), or None.
        entity: the NER entity type (``DATE``) whose first entity in the message fills it, or None.
    """

    name: str
    pattern: re.Pattern[str] | None = None
    entity: str | None = None

    def find(self, text: str, entities: list[dict[str, Any]] | None = None) -> str | None:
        """This slot's value in ``text`` (``entities``: the NER run's entities of it), or None."""
        if self.pattern is not None:
            match = self.pattern.search(text)
            if match is None:
                return None
            value = match.group(1) if self.pattern.groups else match.group(0)
            return value.strip() if value else None
        for ent in entities or ():
            if ent.get("label") == self.entity and str(ent.get("text", "")).strip():
                return str(ent["text"]).strip()
        return None


@dataclass(frozen=True)
class IntentAnswer:
    """An intent's reply template, the slots it names, and its own fallback (or None)."""

    template: str
    slots: tuple[str, ...]
    fallback: str | None = None


@dataclass(frozen=True)
class Answers:
    """A parsed, checked answers file.

    Attributes:
        path: the file, for error messages.
        intents: intent name -> its answer.
        slots: slot name -> where its value comes from.
        fallback: the reply when a slot is missing and the intent has no fallback of its own.
        handoff: the reply when the message is handed to a person (None: ``DEFAULT_HANDOFF``).
    """

    path: Path
    intents: dict[str, IntentAnswer]
    slots: dict[str, Slot] = field(default_factory=dict)
    fallback: str | None = None
    handoff: str | None = None

    @property
    def handoff_reply(self) -> str:
        return self.handoff or DEFAULT_HANDOFF

    @property
    def entity_types(self) -> set[str]:
        """The NER entity types the slots need (empty: no NER run needed)."""
        return {s.entity for s in self.slots.values() if s.entity}

    def needs_ner(self, intent: str) -> bool:
        """Whether filling ``intent``'s template needs the NER run's entities."""
        answer = self.intents.get(intent)
        return bool(answer) and any(self.slots[s].entity for s in answer.slots)  # type: ignore[union-attr]

    def check_intents(
        self, model_intents: Iterable[str], *, knowledge: bool, oos_label: str | None = None
    ) -> list[str]:
        """Check the file against the intent model's labels.

        Args:
            model_intents: the intent run's label names.
            knowledge: a knowledge base will answer what templates do not.
            oos_label: the model's out-of-scope class, if any: it needs no answer (the bot
                hands it off), so it is neither warned about nor required.

        Returns:
            The model's intents that have no answer (sorted), to be answered from the knowledge
            base or handed off; the caller warns with them.

        Raises:
            ConfigError: the file answers intents the model does not have, or (without a
                knowledge base) leaves some of the model's intents unanswered.
        """
        known = list(model_intents)
        unknown = sorted(set(self.intents) - set(known))
        if unknown:
            raise ConfigError(
                f"{self.path}: intents: answers for {_listing(unknown)}, which the intent model has no "
                f"label for (it has {_listing(sorted(known))}); fix the names or remove them"
            )
        missing = sorted(set(known) - set(self.intents) - {oos_label})
        if missing and not knowledge:
            raise ConfigError(
                f"{self.path}: intents: no answer for {_listing(missing)}; add answers, "
                "or give a knowledge base to answer them from"
            )
        return missing

    def check_entities(self, ner_types: set[str] | None, *, ner: str | None) -> None:
        """Check that every ``{entity: TYPE}`` slot has an NER run that finds ``TYPE``.

        Raises:
            ConfigError: an entity slot without an NER run, or with a type the run does not tag.
        """
        needed = {name: s.entity for name, s in self.slots.items() if s.entity}
        if not needed:
            return
        if ner_types is None:
            name, kind = next(iter(sorted(needed.items())))
            raise ConfigError(
                f"{self.path}: slots.{name}: filled by entity {kind}, which needs an NER run; "
                "give --ner runs/<ner-run> or make it a regex"
            )
        for name, kind in sorted(needed.items()):
            if kind not in ner_types:
                raise ConfigError(
                    f"{self.path}: slots.{name}: entity {kind} is not a type the NER run {ner} tags "
                    f"({', '.join(sorted(ner_types)) or 'none'})"
                )

    def fill(
        self,
        intent: str,
        text: str,
        entities: list[dict[str, Any]] | None = None,
        *,
        earlier: str | None = None,
        earlier_entities: list[dict[str, Any]] | None = None,
    ) -> tuple[str, list[str]]:
        """The reply for ``intent`` to the message ``text``.

        ``earlier``: the message read with the conversation's previous one (a follow-up), where a
        slot is looked for only when ``text`` lacks it: the follow-up's own value comes first
        ("and for the kids, EUR 20?" after "tickets were $50": 20, not 50).

        Returns:
            ``(reply, missing)``: the filled template, or the intent's (else the file's) fallback
            when a slot is not in the message; ``missing`` names the slots not found.
        """
        answer = self.intents[intent]
        values = {}
        for name in answer.slots:
            value = self.slots[name].find(text, entities)
            if value is None and earlier is not None:
                value = self.slots[name].find(earlier, earlier_entities)
            values[name] = value
        missing = [name for name, value in values.items() if value is None]
        if missing:
            return (answer.fallback or self.fallback or "").format(), missing
        return answer.template.format(**values), []


def read_answers(path: str | Path) -> Answers:
    """Read and check an answers file.

    Raises:
        ConfigError: the file is missing, empty, not YAML, or a field is wrong; the message names
            the file and the field (``intents.card_arrival.answer``) and what to do.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: answers file not found")
    try:
        doc = load_names_yaml(p.read_text(encoding="utf-8"), str(p), what="key")
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8; save the answers file as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{p}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if doc is None:
        raise ConfigError(f"{p}: the answers file is empty; give an intents: mapping of intent -> answer")
    if not isinstance(doc, dict):
        raise ConfigError(f"{p}: must be a mapping with intents: (and optional slots:, fallback:)")
    extra = sorted(set(doc) - set(_FIELDS), key=str)
    if extra:
        raise ConfigError(f"{p}: unknown field {extra[0]!r}; the fields are {', '.join(_FIELDS)}")
    fallback = _optional_text(doc.get("fallback"), p, "fallback")
    if fallback is not None:
        _no_slots(fallback, p, "fallback")
    handoff = _optional_text(doc.get("handoff"), p, "handoff")
    if handoff is not None:
        _no_slots(handoff, p, "handoff")
        handoff = handoff.format()
    slots = _read_slots(doc.get("slots"), p)
    intents = _read_intents(doc.get("intents"), p, slots, has_fallback=fallback is not None)
    return Answers(path=p, intents=intents, slots=slots, fallback=fallback, handoff=handoff)


def _read_slots(raw: Any, path: Path) -> dict[str, Slot]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: slots: must map slot names to a regex or {{entity: TYPE}}")
    slots = {}
    for name, spec in raw.items():
        where = f"{path}: slots.{name}"
        if not isinstance(name, str) or not _is_slot_name(name):
            raise ConfigError(
                f"{where}: slot names are letters (of any script), digits and _, not starting with a digit"
            )
        if isinstance(spec, str):
            if not spec:
                raise ConfigError(f"{where}: empty regex; give a pattern that finds the value")
            try:
                pattern = re.compile(spec, re.IGNORECASE)
            except re.error as exc:
                raise ConfigError(f"{where}: bad regex ({exc}); fix the pattern") from None
            if pattern.fullmatch(""):
                # search() stops at the first place it matches: with `\d*`, the start of any message
                # not opening with the value, where it found "" and the fallback was sent
                raise ConfigError(
                    f"{where}: the pattern matches empty text, so it finds nothing in most messages; "
                    "make it need one character at least (+ instead of *: \\d+, not \\d*)"
                )
            slots[name] = Slot(name, pattern=pattern)
        elif (
            isinstance(spec, dict)
            and set(spec) == {"entity"}
            and isinstance(spec["entity"], str)
            and spec["entity"]
        ):
            slots[name] = Slot(name, entity=spec["entity"])
        else:
            raise ConfigError(f"{where}: give a regex string or {{entity: TYPE}}, not {spec!r}")
    return slots


def _read_intents(
    raw: Any, path: Path, slots: Mapping[str, Slot], *, has_fallback: bool
) -> dict[str, IntentAnswer]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(
            f"{path}: intents: give a mapping of intent name -> {{answer: ...}}, with one at least"
        )
    intents = {}
    for intent, spec in raw.items():
        where = f"{path}: intents.{intent}"
        if isinstance(spec, str):  # shorthand: `card_arrival: "New cards arrive ..."`
            spec = {"answer": spec}
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: give {{answer: ..., fallback: ...}} or the answer text")
        extra = sorted(set(spec) - {"answer", "fallback"}, key=str)
        if extra:
            raise ConfigError(f"{where}: unknown field {extra[0]!r}; the fields are answer, fallback")
        template = _optional_text(spec.get("answer"), path, f"intents.{intent}.answer")
        if template is None:
            raise ConfigError(f"{where}.answer: missing; give the reply text")
        fallback = _optional_text(spec.get("fallback"), path, f"intents.{intent}.fallback")
        named = _template_slots(template, path, f"intents.{intent}.answer")
        for slot in named:
            if slot not in slots:
                declared = ", ".join(sorted(slots)) or "none"
                raise ConfigError(
                    f"{where}.answer: names slot {{{slot}}}, which slots: does not declare "
                    f"(declared: {declared}); declare it or fix the name"
                )
        if named and fallback is None and not has_fallback:
            raise ConfigError(
                f"{where}.fallback: the answer names {{{named[0]}}} but there is no fallback for a "
                "message without it; add a fallback here or at the top of the file"
            )
        if fallback is not None:
            _no_slots(fallback, path, f"intents.{intent}.fallback")
        intents[str(intent)] = IntentAnswer(template, tuple(named), fallback)
    return intents


def _is_slot_name(name: str) -> bool:
    """A slot name is a Python identifier: letters of any script, digits and _, not starting with a
    digit. ``str.format`` takes any such name as a keyword (``{金额}``); an ASCII-only rule refused
    金额, though it is letters as the error asked. Nothing else reads the name (no regex group is
    named after it), and JSON carries any of them."""
    return name.isidentifier()


def _template_slots(template: str, path: Path, where: str) -> list[str]:
    """The slot names a template uses, in order, checked to be plain names."""
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"{path}: {where}: {exc}; write {{{{ and }}}} for literal braces") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not _is_slot_name(name) or spec or conversion:
            raise ConfigError(
                f"{path}: {where}: {{{name}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}} is not a slot; use a plain name like {{amount}}"
            )
        if name not in names:
            names.append(name)
    return names


def _no_slots(text: str, path: Path, where: str) -> None:
    if _template_slots(text, path, where):
        raise ConfigError(f"{path}: {where}: is sent as it is, so it names no slot; remove the {{...}}")


def _optional_text(value: Any, path: Path, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{path}: {where}: must be non-empty text")
    return value.strip()


def _listing(names: list[str], shown: int = 8) -> str:
    more = f", ... ({len(names)} in all)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more

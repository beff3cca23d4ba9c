"""Contract-event rules as configured (``alerting.event_rules``), compiled once at load.

``compile_rules`` checks each rule against the events the contracts' ABI declares (its ``event`` is a
stored type, its templates name only fields such an event has) and compiles its CEL ``filter``
(cel-python), so that a bad rule is one ``ConfigError`` line naming it, before anything runs.
``CompiledRule.matches`` and ``CompiledRule.render`` are what the evaluator (``rule_eval.py``) uses.
Not for deciding when to notify (``rule_eval.py``) nor for reading the store (``rule_runner.py``).
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from exporter.alerting.alert import encode_url
from exporter.config import AlertingSettings, ConfigError, EventRule
from exporter.store.base import StoredEvent

# SPEC §2's log fields of every stored event, usable in filters and templates.
LOG_FIELDS = ("blockNumber", "blockHash", "transactionHash", "logIndex", "address")
# Template fields that are not the event's own: its type and row id, the rule's name, and the link.
EXTRA_FIELDS = ("type", "id", "rule", "explorer_link")
ARGS = "args"


class FilterError(Exception):
    """A filter could not be evaluated on one event (a missing arg, a type error): it does not match."""


@dataclass(frozen=True)
class Template:
    """A ``{field}`` template (Python format syntax without conversions or format specs), rendered by
    plain look-up: ``{args.tokenId}`` never reaches an attribute of any Python object."""

    text: str
    fields: tuple[str, ...]

    @classmethod
    def parse(cls, text: str, allowed: Iterable[str], where: str) -> Template:
        """Raise ``ConfigError`` naming ``where`` for bad syntax or a field not in ``allowed``."""
        known = set(allowed)
        try:
            parts = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise ConfigError(f"{where}: bad template: {exc} (write {{{{ and }}}} for literal braces)") from None
        fields = []
        for _, field, spec, conversion in parts:
            if field is None:
                continue
            if spec or conversion:
                raise ConfigError(f"{where}: {{{field}}}: conversions and format specs are not supported")
            if field == "explorer_link" and field not in known:
                raise ConfigError(
                    f"{where}: {{explorer_link}} needs alerting.explorer_url (e.g. https://polygonscan.com)"
                )
            if field not in known:
                raise ConfigError(
                    f"{where}: unknown template field {{{field}}} (known: {', '.join(sorted(known)) or 'none'})"
                )
            fields.append(field)
        return cls(text, tuple(fields))

    def render(self, values: Mapping[str, str]) -> str:
        out = []
        for literal, field, _, _ in string.Formatter().parse(self.text):
            out.append(literal)
            if field is not None:
                out.append(values.get(field, ""))
        return "".join(out)


class EventFilter:
    """A compiled CEL expression over one event: ``args`` (a map of the decoded arguments; uint256
    values are decimal strings, bytes 0x-hex), the log fields of ``LOG_FIELDS`` and ``type``.

    ``sample`` (an event of the rule's type with placeholder values) is evaluated once at load, so an
    unknown variable or argument, or an expression that is not a boolean, is refused then."""

    def __init__(self, expression: str, where: str, sample: StoredEvent) -> None:
        # cel-python (and its parser's grammar, about a second of start-up) only when a rule has a filter.
        import celpy
        from celpy.celparser import CELParseError

        self.expression = expression
        environment = celpy.Environment()
        try:
            self._program = environment.program(environment.compile(expression))
        except CELParseError as exc:
            raise ConfigError(f"{where}: bad CEL expression {expression!r}: {_parse_problem(exc)}") from None
        # Also those a short-circuit would hide from the sample (``false && args.nope == "1"``).
        known = sample.data.get(ARGS) or {}
        for match in _ARG_REFERENCE.finditer(expression):
            name = match.group(1) or match.group(3)
            if name not in known:
                raise ConfigError(
                    f"{where}: CEL expression {expression!r}: {sample.type} has no argument {name!r} "
                    f"(it has: {', '.join(known) or 'none'})"
                )
        try:
            self.matches(sample)
        except FilterError as exc:
            raise ConfigError(f"{where}: CEL expression {expression!r} cannot be evaluated: {exc}") from None

    def matches(self, event: StoredEvent) -> bool:
        """True when the expression is true for ``event``; ``FilterError`` when it cannot be evaluated
        or is not a boolean."""
        from celpy import celtypes
        from celpy.evaluation import CELEvalError

        try:
            result = self._program.evaluate(activation(event))
        except CELEvalError as exc:
            raise FilterError(_eval_problem(exc)) from None
        except (TypeError, ValueError, KeyError, ArithmeticError) as exc:
            raise FilterError(f"{type(exc).__name__}: {exc}") from None
        if isinstance(result, CELEvalError):
            raise FilterError(_eval_problem(result))
        if not isinstance(result, celtypes.BoolType):
            raise FilterError(f"it gives a {type(result).__name__.removesuffix('Type').lower()}, not a bool")
        return bool(result)


def _parse_problem(exc: Exception) -> str:
    """cel-python's parse error is the text with a caret under the culprit: as a column number."""
    lines = str(exc).splitlines()
    if len(lines) >= 2 and "^" in lines[1]:
        return f"syntax error at column {lines[1].index('^') + 1}"
    return "syntax error"


# ``args.name`` or ``args["name"]``: the argument names a filter uses (checked against the ABI at load).
_ARG_REFERENCE = re.compile(r"\bargs\s*(?:\.\s*([A-Za-z_]\w*)|\[\s*(['\"])(\w+)\2\s*\])")
_OPERATORS = {
    "gt": ">", "lt": "<", "ge": ">=", "le": "<=", "eq": "==", "ne": "!=",
    "add": "+", "sub": "-", "mul": "*", "div": "/", "mod": "%", "neg": "-", "not": "!",
}  # fmt: skip
_CEL_TYPE = re.compile(r"<class 'celpy\.celtypes\.(\w+?)Type'>")
_CEL_TOKEN = re.compile(r"Token\('RULE', '\w+?_(\w+)'\)")
_INNER_ERROR = re.compile(r"CELEvalError\(\*\((['\"])(.+?)\1")


def _eval_problem(exc: Exception) -> str:
    """cel-python's error as one readable line: the first cause (not the errors it propagated), types
    and operators by their CEL names, without the activation it appends (every variable)."""
    first = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    if "celpy.evaluation.CELEvalError" in first:  # an operator over errors: say the first one
        inner = _INNER_ERROR.search(" ".join(str(a) for a in exc.args[1:]))
        if inner:
            first = inner.group(2).replace("\\'", "'")
    first = first.split(" (in activation", 1)[0]
    first = _CEL_TYPE.sub(lambda m: m.group(1).lower(), first)
    first = _CEL_TOKEN.sub(lambda m: _OPERATORS.get(m.group(1), m.group(1)), first)
    if "no matching overload" in first and "string" in first:
        first += " (uint256 arguments are decimal strings: compare int(args.x))"
    return first if len(first) <= 300 else first[:299] + "…"


def sample_event(event_type: str, inputs: Mapping[str, str]) -> StoredEvent:
    """An event of ``event_type`` whose args (name -> ABI type) hold placeholder values of the form the
    listener stores (SPEC §2: integers as decimal strings, bytes and addresses as 0x-hex)."""
    args: dict[str, Any] = {}
    for name, abi_type in inputs.items():
        if abi_type == "bool":
            args[name] = False
        elif abi_type == "string":
            args[name] = ""
        elif abi_type.startswith(("uint", "int")) and "[" not in abi_type:
            args[name] = "0"
        elif abi_type == "address":
            args[name] = "0x" + "00" * 20
        else:
            args[name] = "0x"
    data = {
        "blockNumber": 0,
        "blockHash": "0x" + "00" * 32,
        "transactionHash": "0x" + "00" * 32,
        "logIndex": 0,
        "address": "0x" + "00" * 20,
        ARGS: args,
    }
    return StoredEvent(0, event_type, data, 0, datetime.fromtimestamp(0, UTC))


def activation(event: StoredEvent) -> dict[str, Any]:
    """The CEL variables of ``event``."""
    from celpy import celtypes
    from celpy.adapter import json_to_cel

    data = event.data
    values: dict[str, Any] = {name: json_to_cel(data.get(name)) for name in LOG_FIELDS}
    values[ARGS] = json_to_cel(data.get(ARGS) or {})
    values["type"] = celtypes.StringType(event.type)
    return values


@dataclass(frozen=True)
class CompiledRule:
    """A configured rule with its filter compiled and its templates checked."""

    spec: EventRule
    filter: EventFilter | None
    title: Template
    message: Template
    explorer_url: str | None

    @property
    def name(self) -> str:
        return self.spec.name

    def matches(self, event: StoredEvent) -> bool:
        """Whether ``event`` passes the filter (no filter: every event of the rule's type)."""
        return self.filter is None or self.filter.matches(event)

    def render(self, event: StoredEvent) -> tuple[str, str]:
        """The notice's title and detail for ``event`` (a link to it on the block explorer appended)."""
        values = template_values(event, self.name, self.explorer_url)
        detail = self.message.render(values)
        link = values.get("explorer_link")
        if link and link not in detail:
            detail += f"\nExplorer: {link}"
        return self.title.render(values), detail


def template_values(event: StoredEvent, rule: str, explorer_url: str | None) -> dict[str, str]:
    """Every template field's text for ``event``: ``args.<name>``, the log fields, the extras."""
    data = event.data
    values = {name: _text(data.get(name)) for name in LOG_FIELDS}
    for name, value in (data.get(ARGS) or {}).items():
        values[f"{ARGS}.{name}"] = _text(value)
    values.update(type=event.type, id=str(event.id), rule=rule)
    tx_hash = data.get("transactionHash")
    if explorer_url and isinstance(tx_hash, str):
        # Percent-encoded like the dashboard link: one link, whatever the configured base holds.
        values["explorer_link"] = encode_url(f"{explorer_url.rstrip('/')}/tx/{tx_hash}")
    return values


def _text(value: object) -> str:
    return "" if value is None else str(value)


def compile_rules(
    settings: AlertingSettings,
    events: Mapping[str, Mapping[str, str]],
    source: str = "config",
    stored_as: Mapping[str, str] | None = None,
) -> list[CompiledRule]:
    """The enabled rules of ``settings``, compiled. ``events`` maps each stored event type the
    contracts declare (``events.type``) to its ABI arguments (name -> ABI type); ``stored_as`` maps an
    ABI event name to the type it is stored under (``listener.event_types``), for a hint. Raises
    ``ConfigError`` with one line naming the rule (``config.yaml: alerting.event_rules[0] (failsafe).filter: ...``)."""
    compiled = []
    for index, rule in enumerate(settings.event_rules):
        where = f"{source}: alerting.event_rules[{index}] ({rule.name})"
        if rule.event not in events:
            stored = (stored_as or {}).get(rule.event)
            if stored is not None:
                raise ConfigError(
                    f"{where}.event: {rule.event} is stored as type {stored!r} (listener.event_types): use that"
                )
            raise ConfigError(
                f"{where}.event: unknown event type {rule.event!r} (the contracts declare: "
                f"{', '.join(sorted(events)) or 'none'})"
            )
        fields = [*LOG_FIELDS, *EXTRA_FIELDS, *(f"{ARGS}.{name}" for name in events[rule.event])]
        if settings.explorer_url is None:
            fields.remove("explorer_link")
        title = Template.parse(rule.title, fields, f"{where}.title")
        message = Template.parse(rule.message, fields, f"{where}.message")
        sample = sample_event(rule.event, events[rule.event])
        event_filter = EventFilter(rule.filter, f"{where}.filter", sample) if rule.filter is not None else None
        if rule.enabled:
            compiled.append(CompiledRule(rule, event_filter, title, message, settings.explorer_url))
    return compiled

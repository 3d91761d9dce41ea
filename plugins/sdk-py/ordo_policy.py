"""The Python side of Ordo's plugin SDK: write a policy as a class, export it as a component.

A policy is a class with three members, the same as the Rust SDK's `Plugin` trait:

    class Lww:
        SCHEMA = '{"type": "object", ...}'          # JSON Schema of an event body

        @staticmethod
        def validate(event: dict) -> None: ...      # raise Invalid.field(name, message)

        @staticmethod
        def merge(incoming: dict, stored: dict | None) -> Write | Skip | Reject: ...

and `Policy = ordo_policy.component(Lww)` in the module given to `componentize-py` (the WIT
world `policy-plugin` exports the interface `policy`, so componentize-py looks for `Policy`).

What this module does for a policy, as the Rust SDK does: parses the JSON text the engine
hands over (a body that is not a JSON object is refused as a whole), runs `validate` before
`merge` (an invalid event is rejected naming its field), serialises the record written
(compact, keys sorted: the same text the Rust SDK writes, so a tie-break on the text agrees
across languages), and turns a Python exception inside the policy into a reject with its
type and message rather than a trap. Helpers: `string`, `non_empty`, `all_strings`,
`flat_update`, `timestamp` and `parse_timestamp` (RFC 3339 to an integer instant in
nanoseconds: compare instants, never the text).

Nothing here imports the generated bindings until `component` is called, so a policy and
this module can be tested with a plain CPython (`python -m unittest`).
"""
import json
import re

__all__ = [
    "Invalid", "Write", "Skip", "Reject", "string", "non_empty", "all_strings",
    "flat_update", "timestamp", "parse_timestamp", "canonical", "validate_text",
    "merge_text", "component",
]


class Invalid(Exception):
    """Why an event was refused: the top-level `field` at fault ("" for the body as a whole)
    and the rule it broke, for a human ("is required", "must be a string")."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field} {message}" if field else message)
        self.field = field
        self.message = message

    @classmethod
    def body(cls, message: str) -> "Invalid":
        """The body as a whole is wrong."""
        return cls("", message)


class Write:
    """Store this record (a dict keeping the key field with its value)."""

    def __init__(self, record: dict):
        self.record = record


class Skip:
    """Keep the stored record; `reason` says why (counted as stale)."""

    def __init__(self, reason: str):
        self.reason = reason


class Reject:
    """The event cannot be applied: it goes to the dead-letter topic with `reason`."""

    def __init__(self, reason: str):
        self.reason = reason


def string(record: dict, field: str) -> str:
    """The string `field` holds; refused when missing or not a string."""
    if field not in record:
        raise Invalid(field, "is required")
    value = record[field]
    if not isinstance(value, str):
        raise Invalid(field, "must be a string")
    return value


def non_empty(record: dict, field: str) -> str:
    """As `string`, and not empty."""
    value = string(record, field)
    if value == "":
        raise Invalid(field, "must not be empty")
    return value


def all_strings(record: dict) -> None:
    """Every field is a string; the error names the first that is not, in key order (as the
    Rust SDK, whose records keep their keys sorted)."""
    for name in sorted(record):
        if not isinstance(record[name], str):
            raise Invalid(name, "must be a string")


# As the Rust SDK reads RFC 3339 (`chrono`'s `parse_from_rfc3339`): ASCII digits only, `T`,
# `t` or a space between date and time, any number of fraction digits (nanoseconds kept, the
# rest ignored), `Z` or `z`, an offset's sign `+`, `-` or U+2212, and a leap second (`:60`)
# at the end of any minute, read as the last nanosecond of that minute.
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]+))?(?:([Zz])|([+\-\u2212])([0-9]{2}):([0-9]{2}))\Z"
)
_NANOS = 1_000_000_000
_DAY = 86_400


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 in the proleptic Gregorian calendar (year 0 included)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def parse_timestamp(text: str):
    """The instant an RFC 3339 timestamp (any UTC offset, up to nanoseconds) denotes, as
    integer nanoseconds since the Unix epoch; None when `text` is not one."""
    m = _RFC3339.match(text) if isinstance(text, str) else None
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    if not (1 <= month <= 12 and 1 <= day <= _days_in_month(year, month)):
        return None
    if hour > 23 or minute > 59 or second > 60:
        return None
    offset = 0
    if m.group(8) is None:
        off_h, off_m = int(m.group(10)), int(m.group(11))
        if off_h > 23 or off_m > 59:
            return None
        offset = (off_h * 60 + off_m) * 60 * (1 if m.group(9) == "+" else -1)
    nanos = int((m.group(7) or "")[:9].ljust(9, "0"))
    leap = second == 60
    if leap:
        second, nanos = 59, _NANOS - 1
    seconds = _days_from_civil(year, month, day) * _DAY + hour * 3600 + minute * 60 + second - offset
    return seconds * _NANOS + nanos


def timestamp(record: dict, field: str) -> int:
    """The instant `field` holds (see `parse_timestamp`); an error names the field."""
    value = parse_timestamp(string(record, field))
    if value is None:
        raise Invalid(field, "must be an RFC 3339 timestamp such as 2006-01-02T15:00:00.5+10:00")
    return value


def flat_update(event: dict, key_field: str, version_field: str) -> int:
    """The common shape of an entity update: every field a string, `key_field` not empty and
    `version_field` an RFC 3339 timestamp, whose instant is returned."""
    all_strings(event)
    non_empty(event, key_field)
    return timestamp(event, version_field)


def canonical(record: dict) -> str:
    """A record as the engine is handed it: compact JSON, keys sorted, UTF-8 unescaped."""
    return json.dumps(record, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


# What the Rust SDK's parser (serde_json) refuses and Python's json module would take:
# NaN and Infinity, a number out of a double's range, a lone surrogate in a \u escape, nesting deeper than 127.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_MAX_DEPTH = 127


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("number out of range")
    return value


def _too_deep(text: str) -> bool:
    if text.count("[") + text.count("{") <= _MAX_DEPTH:
        return False
    depth, in_string, escaped = 0, False, False
    for c in text:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            if depth > _MAX_DEPTH:
                return True
        elif c in "]}":
            depth -= 1
    return False


def _object(text: str) -> dict:
    if _too_deep(text):
        raise Invalid.body("not valid JSON: recursion limit exceeded")
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite)
        if _SURROGATE_ESCAPE.search(text):
            canonical(value).encode("utf-8")  # a lone surrogate cannot be encoded
    except (ValueError, UnicodeError) as e:
        raise Invalid.body(f"not valid JSON: {e}")
    if not isinstance(value, dict):
        raise Invalid.body("must be a JSON object")
    return value


def validate_text(policy, event: str) -> None:
    """Parses `event` and validates it with `policy`; raises `Invalid`."""
    policy.validate(_object(event))


def merge_text(policy, incoming: str, stored):
    """Parses and validates `incoming`, parses `stored`, merges: a decision whose record (for
    a write) is already serialised."""
    try:
        event = _object(incoming)
        policy.validate(event)
    except Invalid as e:
        return Reject(str(e))
    try:
        held = None if stored is None else _object(stored)
    except Invalid as e:
        return Reject(f"the stored record is unreadable: {e}")
    try:
        decision = policy.merge(event, held)
    except Exception as e:  # a bug in the policy refuses this event, not the engine
        return Reject(f"the policy failed: {type(e).__name__}: {e}")
    if isinstance(decision, Write):
        return Write(canonical(decision.record))
    if isinstance(decision, (Skip, Reject)):
        return decision
    return Reject(f"the policy returned {type(decision).__name__}, not Write, Skip or Reject")


def component(policy):
    """The class componentize-py exports for the WIT interface `policy`, running `policy`;
    None under a plain CPython, where the bindings do not exist (tests of the rule)."""
    try:
        from componentize_py_types import Err
        from wit_world import exports
        from wit_world.exports import policy as wit
    except ImportError:
        return None

    class Policy(exports.Policy):
        def validate(self, event: str) -> None:
            try:
                validate_text(policy, event)
            except Invalid as e:
                raise Err(wit.FieldError(field=e.field, message=e.message))
            except Exception as e:
                raise Err(wit.FieldError(field="", message=f"the policy failed: {type(e).__name__}: {e}"))

        def merge(self, incoming: str, stored):
            decision = merge_text(policy, incoming, stored)
            if isinstance(decision, Write):
                return wit.Decision_Write(decision.record)
            if isinstance(decision, Skip):
                return wit.Decision_Skip(decision.reason)
            return wit.Decision_Reject(decision.reason)

        def schema(self) -> str:
            return policy.SCHEMA

    return Policy

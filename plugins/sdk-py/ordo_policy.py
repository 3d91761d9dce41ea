"""The Python side of Ordo's plugin SDK: write a policy as a class, export it as a component.

A policy is a class with four members, the same as the Rust SDK's `Plugin` trait:

    class Lww:
        @staticmethod
        def configure(config: dict): ...            # the pipeline's plugin_config ({} when
                                                    # none): what it returns is handed to the
                                                    # others; raise ConfigError(reason)
        @staticmethod
        def schema(config) -> str: ...              # JSON Schema of an event body

        @staticmethod
        def validate(config, event: dict) -> None: ...   # raise Invalid(name, message)

        @staticmethod
        def merge(config, incoming: dict, stored: dict | None) -> Write | Skip | Reject: ...

and `Policy = ordo_policy.component(Lww)` in the module given to `componentize-py` (the WIT
world `policy-plugin` exports the interface `policy`, so componentize-py looks for `Policy`).

What this module does for a policy, as the Rust SDK does: parses the JSON text the engine
hands over (a body that is not a JSON object is refused as a whole), runs `validate` before
`merge` (an invalid event is rejected naming its field), serialises the record written
(compact, keys sorted: the same text the Rust SDK writes, so a tie-break on the text agrees
across languages), and turns a Python exception inside the policy into a reject with its
type and message rather than a trap. `configure` runs once per instance (the engine calls
it before anything else) and its result is kept for every call. Helpers: `string`,
`non_empty`, `all_strings`, `flat_update`, `timestamp` and `parse_timestamp` (RFC 3339 to an
integer instant in nanoseconds: compare instants, never the text), and `Entity`, the
configuration of a generic entity policy (key, version and its form, required fields, schema
help) with the Rust SDK's keys, rules and messages.

Nothing here imports the generated bindings until `component` is called, so a policy and
this module can be tested with a plain CPython (`python -m unittest`).
"""
import json
import re

__all__ = [
    "Invalid", "ConfigError", "Write", "Skip", "Reject", "string", "non_empty", "all_strings",
    "flat_update", "timestamp", "parse_timestamp", "canonical", "Entity", "VERSION_FORMS",
    "configure_text", "validate_text", "merge_text", "component",
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


class ConfigError(Exception):
    """Why a configuration is refused: the text the engine shows (name the key at fault)."""


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


def all_strings(record: dict, except_field=None) -> None:
    """Every field (but `except_field`) is a string; the error names the first that is not, in
    key order (as the Rust SDK, whose records keep their keys sorted)."""
    for name in sorted(record):
        if not isinstance(record[name], str) and name != except_field:
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


# The largest whole number a version may be as a JSON number (a double beyond it loses units).
MAX_SAFE_INTEGER = 2 ** 53 - 1

# Every version form, by its name in the configuration, with what it is for messages.
VERSION_FORMS = {
    "rfc3339": "an RFC 3339 timestamp",
    "epoch_seconds": "Unix time in seconds",
    "epoch_millis": "Unix time in milliseconds",
    "epoch_micros": "Unix time in microseconds",
    "epoch_nanos": "Unix time in nanoseconds",
    "sequence": "a sequence number",
}
_DIGITS = re.compile(r"[0-9]+\Z")
_ENTITY_KEYS = ["key_field", "version_field", "version_form", "required_fields",
                "strings_only", "description", "fields"]


def parse_version(form: str, value):
    """The version `value` holds in `form`, as something that compares as the form says
    (integer nanoseconds for rfc3339; (length, digits) for a whole number), or None."""
    if form == "rfc3339":
        return parse_timestamp(value) if isinstance(value, str) else None
    if isinstance(value, str):
        if not _DIGITS.match(value):
            return None
        digits = value.lstrip("0") or "0"
        return (len(digits), digits)
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not (value >= 0 and value.is_integer() and value <= MAX_SAFE_INTEGER):
            return None
        value = int(value)
    if isinstance(value, int) and 0 <= value <= MAX_SAFE_INTEGER:
        digits = str(value)
        return (len(digits), digits)
    return None


def _wrong(key: str, rule: str) -> ConfigError:
    return ConfigError(f"`{key}` {rule}")


class Entity:
    """A generic entity policy's configuration, read from a plugin_config as the Rust SDK's
    `entity::Entity` reads it: `key_field` and `version_field` (required), `version_form`
    (rfc3339 by default; epoch_seconds, epoch_millis, epoch_micros, epoch_nanos, sequence),
    `required_fields`, `strings_only`, `description`, and `fields` (per field, `description`
    and `example` for the schema). `also` names keys the plugin reads itself."""

    def __init__(self, config: dict, also=()):
        known = _ENTITY_KEYS + list(also)
        for key in config:
            if key not in known:
                raise _wrong(key, f"is not a key this plugin knows (it knows {', '.join(known)})")

        def text(key):
            value = config.get(key)
            if value is not None and not isinstance(value, str):
                raise _wrong(key, "must be a string")
            return value

        def field(key):
            value = text(key)
            if value is None:
                raise _wrong(key, "is required")
            if value == "":
                raise _wrong(key, "must not be empty")
            return value

        self.key_field = field("key_field")
        self.version_field = field("version_field")
        if self.version_field == self.key_field:
            raise _wrong("version_field", "must differ from key_field")
        form = text("version_form")
        if form is None:
            form = "rfc3339"
        if form not in VERSION_FORMS:
            raise _wrong("version_form", f"must be one of {', '.join(VERSION_FORMS)}")
        self.version_form = form
        required = config.get("required_fields", [])
        if not isinstance(required, list) or not all(isinstance(r, str) and r for r in required):
            raise _wrong("required_fields", "must be a list of field names")
        self.required_fields = list(required)
        strings_only = config.get("strings_only", False)
        if not isinstance(strings_only, bool):
            raise _wrong("strings_only", "must be true or false")
        self.strings_only = strings_only
        self.description = text("description")
        fields = config.get("fields", {})
        if not isinstance(fields, dict):
            raise _wrong("fields", "must be a table of fields")
        for name, doc in fields.items():
            if not isinstance(doc, dict):
                raise _wrong(f"fields.{name}", "must be a table of `description` and `example`")
            for key, value in doc.items():
                if key == "description" and not isinstance(value, str):
                    raise _wrong(f"fields.{name}.description", "must be a string")
                if key not in ("description", "example"):
                    raise _wrong(f"fields.{name}.{key}",
                                 "is not a key this plugin knows (it knows description, example)")
        self.fields = fields

    def version(self, record: dict):
        """The version `record` holds (see `parse_version`); an error names the field."""
        field, form = self.version_field, self.version_form
        if form == "rfc3339":
            return timestamp(record, field)
        if field not in record:
            raise Invalid(field, "is required")
        value = parse_version(form, record[field])
        if value is None:
            raise Invalid(field, f"must be {VERSION_FORMS[form]}: a whole number, as a JSON "
                                 f"number up to {MAX_SAFE_INTEGER} or a string of digits")
        return value

    def normalize(self, record: dict) -> None:
        """Writes a numeric version given as a JSON number as the whole number it is (as the
        Rust SDK's `Entity::normalize`: a tie-break on the text of records then agrees)."""
        if self.version_form == "rfc3339":
            return
        value = record.get(self.version_field)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            parsed = parse_version(self.version_form, value)
            if parsed is not None:
                record[self.version_field] = int(parsed[1])

    def check(self, event: dict):
        """An event's shape, as the Rust SDK checks it; returns its version."""
        if self.strings_only:
            numeric = self.version_form != "rfc3339"
            all_strings(event, self.version_field if numeric else None)
        non_empty(event, self.key_field)
        version = self.version(event)
        for name in self.required_fields:
            if name not in event:
                raise Invalid(name, "is required")
        return version

    def schema(self, description: str) -> dict:
        """The JSON Schema of an event, as the Rust SDK makes it."""
        properties = {}

        def prop(name, schema):
            schema.update(self.fields.get(name, {}))
            properties[name] = schema

        prop(self.key_field, {"type": "string", "minLength": 1})
        if self.version_form == "rfc3339":
            prop(self.version_field, {"type": "string", "format": "date-time"})
        else:
            prop(self.version_field, {"oneOf": [
                {"type": "integer", "minimum": 0, "maximum": MAX_SAFE_INTEGER},
                {"type": "string", "pattern": "^[0-9]+$"},
            ]})
        for name in self.required_fields + list(self.fields):
            if name not in (self.key_field, self.version_field):
                prop(name, {"type": "string"} if self.strings_only else {})
        required = [self.key_field]
        if self.version_form != "rfc3339":
            required.append(self.version_field)
        for name in self.required_fields:
            if name not in required:
                required.append(name)
        schema = {
            "type": "object",
            "description": self.description if self.description is not None else description,
            "required": required,
            "properties": properties,
        }
        if self.strings_only:
            schema["additionalProperties"] = {"type": "string"}
        return schema


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


def configure_text(policy, config: str):
    """Parses the configuration (JSON text) and hands it to `policy.configure`; raises
    `ConfigError`, also for a failure of the policy's own."""
    try:
        value = json.loads(config)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ConfigError("plugin_config must be a JSON object")
    try:
        return policy.configure(value)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"the policy failed: {type(e).__name__}: {e}")


def validate_text(policy, config, event: str) -> None:
    """Parses `event` and validates it with `policy` under `config`; raises `Invalid`."""
    policy.validate(config, _object(event))


def merge_text(policy, config, incoming: str, stored):
    """Parses and validates `incoming`, parses `stored`, merges under `config`: a decision
    whose record (for a write) is already serialised."""
    try:
        event = _object(incoming)
        policy.validate(config, event)
    except Invalid as e:
        return Reject(str(e))
    try:
        held = None if stored is None else _object(stored)
    except Invalid as e:
        return Reject(f"the stored record is unreadable: {e}")
    try:
        decision = policy.merge(config, event, held)
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

    # This instance's configuration, set by `configure` (the engine calls it first); a host
    # that never does gets the policy as `{}` configures it.
    held = []

    def config():
        if not held:
            try:
                held.append(configure_text(policy, "{}"))
            except ConfigError as e:
                raise ConfigError(f"the plugin was not configured: {e}")
        return held[0]

    class Policy(exports.Policy):
        def configure(self, config: str) -> None:
            if held:
                raise Err("the plugin was configured already")
            try:
                held.append(configure_text(policy, config))
            except ConfigError as e:
                raise Err(str(e))

        def validate(self, event: str) -> None:
            try:
                validate_text(policy, config(), event)
            except ConfigError as e:
                raise Err(wit.FieldError(field="", message=str(e)))
            except Invalid as e:
                raise Err(wit.FieldError(field=e.field, message=e.message))
            except Exception as e:
                raise Err(wit.FieldError(field="", message=f"the policy failed: {type(e).__name__}: {e}"))

        def merge(self, incoming: str, stored):
            try:
                decision = merge_text(policy, config(), incoming, stored)
            except ConfigError as e:
                decision = Reject(str(e))
            if isinstance(decision, Write):
                return wit.Decision_Write(decision.record)
            if isinstance(decision, Skip):
                return wit.Decision_Skip(decision.reason)
            return wit.Decision_Reject(decision.reason)

        def schema(self) -> str:
            try:
                return policy.schema(config())
            except ConfigError as e:
                return str(e)  # not JSON: the engine refuses the plugin
            except Exception as e:
                return f"the policy failed: {type(e).__name__}: {e}"

    return Policy

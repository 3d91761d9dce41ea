// The JavaScript side of Ordo's plugin SDK: write a policy as an object, export it as a
// component.
//
// A policy has four members, the same as the Rust SDK's `Plugin` trait:
//
//     const Lww = {
//       configure(config) { ... },                  // the pipeline's plugin_config ({} when
//                                                   // none): what it returns is handed to the
//                                                   // others; throw new ConfigError(reason)
//       schema(config) { ... },                     // JSON Schema of an event body, as text
//       validate(config, event) { ... },            // throw new Invalid(field, message)
//       merge(config, incoming, stored) { ... },    // return new Write(record) | Skip | Reject
//     };
//     export const policy = component(Lww);
//
// in the module given to componentize-js (the WIT world `policy-plugin` exports the interface
// `policy`, so componentize-js looks for the export `policy`).
//
// What this module does for a policy, as the Rust SDK does: parses the JSON text the engine
// hands over (a body that is not a JSON object is refused as a whole; what serde_json refuses
// is refused here too: numbers out of a double's range, lone surrogates, nesting deeper than
// 127), runs `validate` before `merge` (an invalid event is rejected naming its field),
// serialises the record written (compact, keys sorted by code point: the Rust SDK's text, so a
// tie-break on the text agrees across languages), and turns an exception thrown by the policy
// into a reject with its name and message rather than a trap. `configure` runs once per
// instance (the engine calls it before anything else) and its result is kept for every call.
// `Entity` reads the configuration of a generic entity policy (key, version and its form,
// required fields, schema help) with the Rust SDK's keys, rules and messages.
//
// An event or a stored record is an object without a prototype, so `record.constructor` or
// `"toString" in record` see only its own fields (objects nested in it are plain objects:
// test their fields with `Object.hasOwn`).
//
// Nothing here touches the component bindings, so a policy and this module are tested with a
// plain Node (`node --test`).

/** Why an event was refused: the top-level `field` at fault ("" for the body as a whole) and
 * the rule it broke, for a human ("is required", "must be a string"). */
export class Invalid extends Error {
  constructor(field, message) {
    super(field ? `${field} ${message}` : message);
    this.name = "Invalid";
    this.field = field;
    this.rule = message;
  }

  /** The body as a whole is wrong. */
  static body(message) {
    return new Invalid("", message);
  }
}

/** Why a configuration is refused: the text the engine shows (name the key at fault). */
export class ConfigError extends Error {
  constructor(message) {
    super(message);
    this.name = "ConfigError";
  }
}

/** Store this record (an object keeping the key field with its value). */
export class Write {
  constructor(record) {
    this.record = record;
  }
}

/** Keep the stored record; `reason` says why (counted as stale). */
export class Skip {
  constructor(reason) {
    this.reason = reason;
  }
}

/** The event cannot be applied: it goes to the dead-letter topic with `reason`. */
export class Reject {
  constructor(reason) {
    this.reason = reason;
  }
}

const own = (record, field) => Object.prototype.hasOwnProperty.call(record, field);

/** The string `field` holds; refused when missing or not a string. */
export function string(record, field) {
  if (!own(record, field)) throw new Invalid(field, "is required");
  const value = record[field];
  if (typeof value !== "string") throw new Invalid(field, "must be a string");
  return value;
}

/** As `string`, and not empty. */
export function nonEmpty(record, field) {
  const value = string(record, field);
  if (value === "") throw new Invalid(field, "must not be empty");
  return value;
}

// A UTF-16 unit at or above U+D800: where JavaScript's order and code-point order can differ.
const HIGH = /[\ud800-\uffff]/;

/** Orders two strings by Unicode code point, as Rust and Python compare text (JavaScript's
 * `<` compares UTF-16 units, which differs above U+FFFF). Negative, zero or positive. */
export function compareText(a, b) {
  // Where either string has no unit at or above U+D800, the orders agree (the native
  // comparison is much cheaper in an interpreter than the loop below).
  if (!HIGH.test(a) || !HIGH.test(b)) return a < b ? -1 : a > b ? 1 : 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    // A surrogate (U+D800..DFFF) stands for a code point above U+FFFF: it sorts after
    // U+E000..FFFF, not before.
    if (x >= 0xd800 && y >= 0xd800) {
      x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
      y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
    }
    return x - y;
  }
  return a.length - b.length;
}

function sortedKeys(record) {
  const keys = Object.keys(record);
  // The native sort is UTF-16 order: code-point order unless a key has a unit >= U+D800.
  return HIGH.test(keys.join("")) ? keys.sort(compareText) : keys.sort();
}

/** Every field (but `exceptField`) is a string; the error names the first that is not, in key
 * order (as the Rust SDK, whose records keep their keys sorted). */
export function allStrings(record, exceptField = null) {
  for (const name of sortedKeys(record)) {
    if (typeof record[name] !== "string" && name !== exceptField) {
      throw new Invalid(name, "must be a string");
    }
  }
}

// As the Rust SDK reads RFC 3339 (`chrono`'s `parse_from_rfc3339`): ASCII digits only, `T`,
// `t` or a space between date and time, any number of fraction digits (nanoseconds kept, the
// rest ignored), `Z` or `z`, an offset's sign `+`, `-` or U+2212, and a leap second (`:60`)
// at the end of any minute, read as the last nanosecond of that minute.
const RFC3339 =
  /^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?(?:([Zz])|([+\-\u2212])([0-9]{2}):([0-9]{2}))$/;
const NANOS = 1_000_000_000n;
const DAY = 86_400;

const floorDiv = (a, b) => Math.floor(a / b);

function daysInMonth(year, month) {
  if (month === 2) {
    const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
    return leap ? 29 : 28;
  }
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

// Days since 1970-01-01 in the proleptic Gregorian calendar (year 0 included).
function daysFromCivil(year, month, day) {
  const y = month <= 2 ? year - 1 : year;
  const era = floorDiv(y, 400);
  const yearOfEra = y - era * 400;
  const dayOfYear = floorDiv(153 * (month + (month > 2 ? -3 : 9)) + 2, 5) + day - 1;
  const dayOfEra = yearOfEra * 365 + floorDiv(yearOfEra, 4) - floorDiv(yearOfEra, 100) + dayOfYear;
  return era * 146_097 + dayOfEra - 719_468;
}

/** The instant an RFC 3339 timestamp (any UTC offset, up to nanoseconds) denotes, as a
 * BigInt of nanoseconds since the Unix epoch (a Number would lose nanoseconds past 2^53);
 * null when `text` is not one. Compare instants with `<` and `>`, never the text. */
export function parseTimestamp(text) {
  const m = typeof text === "string" ? RFC3339.exec(text) : null;
  if (m === null) return null;
  const [year, month, day, hour, minute] = [1, 2, 3, 4, 5].map((i) => Number(m[i]));
  let second = Number(m[6]);
  if (!(month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth(year, month))) return null;
  if (hour > 23 || minute > 59 || second > 60) return null;
  let offset = 0;
  if (m[8] === undefined) {
    const [offHours, offMinutes] = [Number(m[10]), Number(m[11])];
    if (offHours > 23 || offMinutes > 59) return null;
    offset = (offHours * 60 + offMinutes) * 60 * (m[9] === "+" ? 1 : -1);
  }
  let nanos = BigInt((m[7] ?? "").slice(0, 9).padEnd(9, "0"));
  const leap = second === 60;
  if (leap) {
    second = 59;
    nanos = NANOS - 1n;
  }
  const seconds = daysFromCivil(year, month, day) * DAY + hour * 3600 + minute * 60 + second - offset;
  return BigInt(seconds) * NANOS + nanos;
}

/** The instant `field` holds (see `parseTimestamp`); an error names the field. */
export function timestamp(record, field) {
  const value = parseTimestamp(string(record, field));
  if (value === null) {
    throw new Invalid(field, "must be an RFC 3339 timestamp such as 2006-01-02T15:00:00.5+10:00");
  }
  return value;
}

/** The common shape of an entity update: every field a string, `keyField` not empty and
 * `versionField` an RFC 3339 timestamp, whose instant is returned. */
export function flatUpdate(event, keyField, versionField) {
  allStrings(event);
  nonEmpty(event, keyField);
  return timestamp(event, versionField);
}

/** The largest whole number a version may be as a JSON number (a double beyond it loses
 * units: write larger versions as strings of digits). */
export const MAX_SAFE_INTEGER = Number.MAX_SAFE_INTEGER;

/** Every version form, by its name in the configuration, with what it is for messages. */
export const VERSION_FORMS = {
  rfc3339: "an RFC 3339 timestamp",
  epoch_seconds: "Unix time in seconds",
  epoch_millis: "Unix time in milliseconds",
  epoch_micros: "Unix time in microseconds",
  epoch_nanos: "Unix time in nanoseconds",
  sequence: "a sequence number",
};
const DIGITS = /^[0-9]+$/;
const ENTITY_KEYS = ["key_field", "version_field", "version_form", "required_fields", "strings_only", "description", "fields"];

/** The version `value` holds in `form`, as something `compareVersions` orders (a BigInt of
 * nanoseconds for rfc3339, the digits without leading zeros for a whole number), or null. */
export function parseVersion(form, value) {
  if (form === "rfc3339") return typeof value === "string" ? parseTimestamp(value) : null;
  if (typeof value === "string") {
    if (!DIGITS.test(value)) return null;
    return value.replace(/^0+/, "") || "0";
  }
  if (typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= MAX_SAFE_INTEGER) {
    return String(value === 0 ? 0 : value);
  }
  return null;
}

/** Orders two versions of one form: negative, zero or positive. */
export function compareVersions(a, b) {
  if (typeof a === "bigint") return a < b ? -1 : a > b ? 1 : 0;
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

const wrong = (key, rule) => new ConfigError(`\`${key}\` ${rule}`);

/** A generic entity policy's configuration, read from a plugin_config as the Rust SDK's
 * `entity::Entity` reads it: `key_field` and `version_field` (required), `version_form`
 * (rfc3339 by default; epoch_seconds, epoch_millis, epoch_micros, epoch_nanos, sequence),
 * `required_fields`, `strings_only`, `description`, and `fields` (per field, `description`
 * and `example` for the schema). `also` names keys the plugin reads itself. */
export class Entity {
  constructor(config, also = []) {
    const known = [...ENTITY_KEYS, ...also];
    for (const key of Object.keys(config)) {
      if (!known.includes(key)) throw wrong(key, `is not a key this plugin knows (it knows ${known.join(", ")})`);
    }
    const text = (key) => {
      if (!own(config, key)) return null;
      if (typeof config[key] !== "string") throw wrong(key, "must be a string");
      return config[key];
    };
    const field = (key) => {
      const value = text(key);
      if (value === null) throw wrong(key, "is required");
      if (value === "") throw wrong(key, "must not be empty");
      return value;
    };
    this.keyField = field("key_field");
    this.versionField = field("version_field");
    if (this.versionField === this.keyField) throw wrong("version_field", "must differ from key_field");
    const form = text("version_form") ?? "rfc3339";
    if (!own(VERSION_FORMS, form)) {
      throw wrong("version_form", `must be one of ${Object.keys(VERSION_FORMS).join(", ")}`);
    }
    this.versionForm = form;
    const required = own(config, "required_fields") ? config.required_fields : [];
    if (!Array.isArray(required) || !required.every((r) => typeof r === "string" && r !== "")) {
      throw wrong("required_fields", "must be a list of field names");
    }
    this.requiredFields = [...required];
    const stringsOnly = own(config, "strings_only") ? config.strings_only : false;
    if (typeof stringsOnly !== "boolean") throw wrong("strings_only", "must be true or false");
    this.stringsOnly = stringsOnly;
    this.description = text("description");
    const fields = own(config, "fields") ? config.fields : {};
    if (fields === null || typeof fields !== "object" || Array.isArray(fields)) {
      throw wrong("fields", "must be a table of fields");
    }
    for (const [name, doc] of Object.entries(fields)) {
      if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
        throw wrong(`fields.${name}`, "must be a table of `description` and `example`");
      }
      for (const [key, value] of Object.entries(doc)) {
        if (key === "description" && typeof value !== "string") {
          throw wrong(`fields.${name}.description`, "must be a string");
        }
        if (key !== "description" && key !== "example") {
          throw wrong(`fields.${name}.${key}`, "is not a key this plugin knows (it knows description, example)");
        }
      }
    }
    this.fields = fields;
  }

  /** The version `record` holds (see `parseVersion`); an error names the field. */
  version(record) {
    const [field, form] = [this.versionField, this.versionForm];
    if (form === "rfc3339") return timestamp(record, field);
    if (!own(record, field)) throw new Invalid(field, "is required");
    const value = parseVersion(form, record[field]);
    if (value === null) {
      throw new Invalid(
        field,
        `must be ${VERSION_FORMS[form]}: a whole number, as a JSON number up to ${MAX_SAFE_INTEGER} or a string of digits`,
      );
    }
    return value;
  }

  /** Writes a numeric version given as a JSON number as the whole number it is (as the Rust
   * SDK's `Entity::normalize`: a tie-break on the text of records then agrees). */
  normalize(record) {
    if (this.versionForm === "rfc3339" || !own(record, this.versionField)) return;
    const value = record[this.versionField];
    if (typeof value !== "number") return;
    const parsed = parseVersion(this.versionForm, value);
    if (parsed !== null) record[this.versionField] = Number(parsed);
  }

  /** An event's shape, as the Rust SDK checks it; returns its version. */
  check(event) {
    if (this.stringsOnly) allStrings(event, this.versionForm !== "rfc3339" ? this.versionField : null);
    nonEmpty(event, this.keyField);
    const version = this.version(event);
    for (const name of this.requiredFields) {
      if (!own(event, name)) throw new Invalid(name, "is required");
    }
    return version;
  }

  /** The JSON Schema of an event, as the Rust SDK makes it. */
  schema(description) {
    const properties = {};
    const prop = (name, schema) => {
      properties[name] = { ...schema, ...(own(this.fields, name) ? this.fields[name] : {}) };
    };
    prop(this.keyField, { type: "string", minLength: 1 });
    prop(
      this.versionField,
      this.versionForm === "rfc3339"
        ? { type: "string", format: "date-time" }
        : {
            oneOf: [
              { type: "integer", minimum: 0, maximum: MAX_SAFE_INTEGER },
              { type: "string", pattern: "^[0-9]+$" },
            ],
          },
    );
    for (const name of [...this.requiredFields, ...Object.keys(this.fields)]) {
      if (name !== this.keyField && name !== this.versionField) prop(name, this.stringsOnly ? { type: "string" } : {});
    }
    const required = [this.keyField];
    if (this.versionForm !== "rfc3339") required.push(this.versionField);
    for (const name of this.requiredFields) if (!required.includes(name)) required.push(name);
    const schema = {
      type: "object",
      description: this.description ?? description,
      required,
      properties,
    };
    if (this.stringsOnly) schema.additionalProperties = { type: "string" };
    return schema;
  }
}

/** A record as the engine is handed it: compact JSON, keys sorted by code point, non-ASCII
 * unescaped. Strings, booleans, null, objects and arrays are written as the Rust SDK writes
 * them; a number is JavaScript's shortest form (`5`, `1e+22`), where serde_json keeps
 * `5.0` and writes `1e22`. */
export function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    return `{${sortedKeys(value)
      .map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

const MAX_DEPTH = 127;

const BRACKETS = /[^[{]+/g;

// Nesting deeper than serde_json's limit, checked on the text before JSON.parse recurses.
function tooDeep(text) {
  // Counted natively first: only text with more brackets than the limit is walked.
  if (text.replace(BRACKETS, "").length <= MAX_DEPTH) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // a backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_DEPTH) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

// What serde_json refuses and JSON.parse takes, found in a parsed value; the reason or null.
function unrepresentable(value) {
  if (typeof value === "number") return Number.isFinite(value) ? null : "number out of range";
  if (typeof value === "string") return LONE_SURROGATE.test(value) ? "lone surrogate in a string" : null;
  if (value === null || typeof value !== "object") return null;
  for (const key of Object.keys(value)) {
    if (LONE_SURROGATE.test(key)) return "lone surrogate in a key";
    const found = unrepresentable(value[key]);
    if (found !== null) return found;
  }
  return null;
}

// Text in which JSON.parse could find what serde_json refuses: an escaped surrogate, or a
// number with an exponent or too many digits for a double. Only such text is walked.
const SUSPECT = /\\u[dD][89a-fA-F]|[0-9][eE]|[0-9]{300}/;

function object(text) {
  if (tooDeep(text)) throw Invalid.body("not valid JSON: recursion limit exceeded");
  let value;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw Invalid.body(`not valid JSON: ${describe(e)}`);
  }
  if (SUSPECT.test(text)) {
    const problem = unrepresentable(value);
    if (problem !== null) throw Invalid.body(`not valid JSON: ${problem}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw Invalid.body("must be a JSON object");
  }
  // Without a prototype (see the module's comment).
  return Object.assign(Object.create(null), value);
}

// What was thrown, for a reason: its name and message, never a stack.
function describe(thrown) {
  try {
    if (thrown instanceof Error) return `${thrown.name}: ${thrown.message}`;
    return String(thrown);
  } catch {
    return "an unprintable exception";
  }
}

const text = (reason) => (typeof reason === "string" ? reason : describe(reason));

/** Parses the configuration (JSON text) and hands it to `policy.configure`; throws
 * `ConfigError`, also for a failure of the policy's own. */
export function configureText(policy, config) {
  let value;
  try {
    value = JSON.parse(config);
  } catch {
    value = null;
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new ConfigError("plugin_config must be a JSON object");
  }
  try {
    return policy.configure(Object.assign(Object.create(null), value));
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(`the policy failed: ${describe(e)}`);
  }
}

/** Parses `event` and validates it with `policy` under `config`; throws `Invalid`. */
export function validateText(policy, config, event) {
  policy.validate(config, object(event));
}

/** Parses and validates `incoming`, parses `stored` (null or undefined when the key is new),
 * merges under `config`: a decision whose record (for a write) is already serialised. */
export function mergeText(policy, config, incoming, stored) {
  let event;
  try {
    event = object(incoming);
    policy.validate(config, event);
  } catch (e) {
    if (e instanceof Invalid) return new Reject(e.message);
    return new Reject(`the policy failed: ${describe(e)}`);
  }
  let held = null;
  if (stored !== null && stored !== undefined) {
    try {
      held = object(stored);
    } catch (e) {
      return new Reject(`the stored record is unreadable: ${e.message}`);
    }
  }
  let decision;
  try {
    decision = policy.merge(config, event, held);
  } catch (e) {
    // A bug in the policy refuses this event, not the engine.
    return new Reject(`the policy failed: ${describe(e)}`);
  }
  if (decision instanceof Write) {
    const record = decision.record;
    if (record === null || typeof record !== "object" || Array.isArray(record)) {
      return new Reject("the policy wrote something that is not a JSON object");
    }
    return new Write(canonical(record));
  }
  if (decision instanceof Skip || decision instanceof Reject) return decision;
  return new Reject(`the policy returned ${describe(decision)}, not a Write, Skip or Reject`);
}

/** The export componentize-js binds to the WIT interface `policy`, running `policy`. */
export function component(policy) {
  // This instance's configuration, set by `configure` (the engine calls it first); a host
  // that never does gets the policy as `{}` configures it.
  let held;
  let configured = false;
  const config = () => {
    if (!configured) {
      try {
        held = configureText(policy, "{}");
      } catch (e) {
        throw new ConfigError(`the plugin was not configured: ${e.message}`);
      }
      configured = true;
    }
    return held;
  };
  return {
    configure(text) {
      if (configured) throw "the plugin was configured already";
      try {
        held = configureText(policy, text);
      } catch (e) {
        throw e instanceof ConfigError ? e.message : describe(e);
      }
      configured = true;
    },
    validate(event) {
      try {
        validateText(policy, config(), event);
      } catch (e) {
        if (e instanceof ConfigError) throw { field: "", message: e.message };
        if (e instanceof Invalid) throw { field: e.field, message: e.rule };
        throw { field: "", message: `the policy failed: ${describe(e)}` };
      }
    },
    merge(incoming, stored) {
      let decision;
      try {
        decision = mergeText(policy, config(), incoming, stored);
      } catch (e) {
        decision = new Reject(e instanceof ConfigError ? e.message : describe(e));
      }
      if (decision instanceof Write) return { tag: "write", val: decision.record };
      if (decision instanceof Skip) return { tag: "skip", val: text(decision.reason) };
      return { tag: "reject", val: text(decision.reason) };
    },
    schema() {
      try {
        return policy.schema(config());
      } catch (e) {
        return e instanceof ConfigError ? e.message : describe(e); // not JSON: the engine refuses the plugin
      }
    },
  };
}

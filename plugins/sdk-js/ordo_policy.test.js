// The JavaScript SDK under a plain Node: `node --test plugins/sdk-js/`.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  ConfigError, Entity, Invalid, MAX_SAFE_INTEGER, Reject, Skip, Write, canonical, compareText,
  compareVersions, component, configureText, flatUpdate, mergeText, parseTimestamp, parseVersion,
  validateText,
} from "./ordo_policy.js";

const NS = 1_000_000_000n;

describe("timestamps", () => {
  it("offsets denote the same instant", () => {
    assert.equal(parseTimestamp("2006-01-02T15:00:00.5+10:00"), parseTimestamp("2006-01-02T05:00:00.5Z"));
    assert.equal(parseTimestamp("1970-01-01T00:00:01Z"), NS);
    assert.equal(parseTimestamp("1970-01-01T01:00:00+01:00"), 0n);
    assert.equal(parseTimestamp("1969-12-31T23:59:59.999999999Z"), -1n);
  });

  it("keeps nanoseconds, even past 2^53", () => {
    assert.equal(parseTimestamp("1970-01-01T00:00:00.000000001Z"), 1n);
    assert.equal(parseTimestamp("1970-01-01T00:00:00.1z"), NS / 10n);
    assert.equal(parseTimestamp("2286-11-20T17:46:40.000000001Z"), 10_000_000_000n * NS + 1n);
    assert.ok(parseTimestamp("9999-12-31T23:59:59.999999999Z") > parseTimestamp("9999-12-31T23:59:59.999999998Z"));
  });

  it("reads what the Rust SDK reads", () => {
    // chrono's RFC 3339, which the Rust plugins use (engine/tests/plugin_languages.rs
    // compares the languages over generated events).
    assert.equal(parseTimestamp("1970-01-01 00:00:01Z"), NS);
    assert.equal(parseTimestamp("1970-01-01t00:00:01Z"), NS);
    assert.equal(parseTimestamp("1970-01-01_00:00:01Z"), null);
    assert.equal(parseTimestamp("1970-01-01T00:00:00\u221201:00"), 3600n * NS);
    assert.equal(parseTimestamp("1970-01-01T00:30:60+00:00"), 1860n * NS - 1n);
    assert.equal(parseTimestamp("1970-01-01T00:00:00.1234567899Z"), 123456789n);
    assert.equal(parseTimestamp("0000-03-01T00:00:00Z"), -62162035200n * NS);
    assert.equal(parseTimestamp("2016-12-31T23:59:60Z"), 1483228800n * NS - 1n);
    assert.equal(parseTimestamp("2017-01-01T00:59:60.5+01:00"), 1483228800n * NS - 1n);
  });

  it("refuses what the Rust SDK refuses", () => {
    for (const text of [
      "2023-02-29T00:00:00Z", "2006-01-02", "2006-01-02T05:00:00", "2006-01-02é05:00:00Z",
      "2016-12-30T23:59:61Z", "٢٠٠٦-01-02T05:00:00Z", "2006-01-02T05:00:00+05:60",
      "2006-01-02_05:00:00Z", "2006-01-02T05:00:00+24:00",
      "2006-01-02T24:00:00Z", "2006-01-02T05:00:00.Z", "2006-01-02T05:00:00+1000",
      "2006-01-02T05:00:00Z\n", "", null, 5,
    ]) {
      assert.equal(parseTimestamp(text), null, JSON.stringify(text));
    }
  });
});

describe("validation", () => {
  it("names the field", () => {
    const cases = [
      [{ UpdatedAt: "2006-01-02T15:00:00Z" }, "PatientId", "is required"],
      [{ PatientId: "", UpdatedAt: "2006-01-02T15:00:00Z" }, "PatientId", "must not be empty"],
      [{ PatientId: "1", Z: 1, A: true, UpdatedAt: "x" }, "A", "must be a string"],
      [{ PatientId: "1" }, "UpdatedAt", "is required"],
      [{ PatientId: "1", UpdatedAt: "yesterday" }, "UpdatedAt", "must be an RFC 3339"],
    ];
    for (const [event, field, rule] of cases) {
      assert.throws(() => flatUpdate(event, "PatientId", "UpdatedAt"), (e) => {
        assert.ok(e instanceof Invalid);
        assert.equal(e.field, field);
        assert.ok(e.rule.startsWith(rule), e.rule);
        return true;
      });
    }
  });

  it("sees only the event's own fields", () => {
    assert.throws(() => validateText(Strict, null, '{"PatientId":"1"}'), (e) => e.field === "constructor");
    validateText(Strict, null, '{"constructor":"x"}');
  });

  it("refuses a body that is not an object as a whole, and what serde_json refuses", () => {
    const deep = `{"a":${"[".repeat(127)}${"]".repeat(127)}}`;
    for (const text of [
      "[]", '"x"', "{", "null", '{"a": NaN}', '{"a": -Infinity}', '{"a": "\\ud800"}',
      '{"a": "\\udc00x"}', '{"a": 1e400}', '{"\\udc00": "x"}', deep,
    ]) {
      assert.throws(() => validateText(Keep, null, text), (e) => e instanceof Invalid && e.field === "", text);
    }
  });
});

// Refuses an event without the field `constructor`.
const Strict = {
  configure: () => null,
  schema: () => "{}",
  validate(config, event) {
    if (!("constructor" in event)) throw new Invalid("constructor", "is required");
  },
  merge: () => new Skip("never"),
};

const Keep = {
  configure(config) {
    if (Object.keys(config).length > 0) throw new ConfigError("takes none");
    return null;
  },
  schema: () => "{}",
  validate(config, event) {
    if ("bad" in event) throw new Invalid("bad", "is not allowed");
  },
  merge(config, incoming, stored) {
    if ("boom" in incoming) throw new RangeError("out of range");
    if ("odd" in incoming) return 42;
    if ("string" in incoming) throw "a string";
    if ("array" in incoming) return new Write([1]);
    return stored === null ? new Write(incoming) : new Skip("kept");
  },
};

describe("parsing", () => {
  it("takes what the Rust SDK takes", () => {
    const pair = '{"a": "\\ud83d\\ude00", "b": "[{\\"}]"}';
    assert.equal(mergeText(Keep, null, pair, null).record, '{"a":"😀","b":"[{\\"}]"}');
    const nested = `{"a":${"[".repeat(126)}${"]".repeat(126)}}`;
    assert.ok(mergeText(Keep, null, nested, null) instanceof Write);
  });

  it("keeps a field named __proto__ as a field", () => {
    assert.equal(mergeText(Keep, null, '{"__proto__": {"x": "1"}, "a": "2"}', null).record, '{"__proto__":{"x":"1"},"a":"2"}');
  });
});

describe("merging", () => {
  it("writes a record as compact JSON sorted by code point", () => {
    const decision = mergeText(Keep, null, '{"b": "é", "a": "\\n", "\\ud83d\\ude00": "", "\\uffff": ""}', null);
    assert.ok(decision instanceof Write);
    assert.equal(decision.record, '{"a":"\\n","b":"é","\uffff":"","😀":""}');
    assert.equal(canonical({ b: 1, a: [1, 2, null, false] }), '{"a":[1,2,null,false],"b":1}');
  });

  it("compares text by code point", () => {
    assert.ok(compareText("😀", "\uffff") > 0);
    assert.ok("😀" < "\uffff", "JavaScript's own order differs, which is why compareText exists");
    assert.ok(compareText("a", "ab") < 0);
    assert.equal(compareText("é", "é"), 0);
  });

  it("rejects an invalid event naming its field", () => {
    const decision = mergeText(Keep, null, '{"bad": "1"}', null);
    assert.ok(decision instanceof Reject);
    assert.match(decision.reason, /bad/);
  });

  it("turns a failing policy into a reject that says why", () => {
    for (const [body, why] of [['{"boom": "1"}', /RangeError: out of range/], ['{"odd": "1"}', /42/], ['{"string": "1"}', /a string/], ['{"array": "1"}', /not a JSON object/]]) {
      const decision = mergeText(Keep, null, body, null);
      assert.ok(decision instanceof Reject, body);
      assert.match(decision.reason, why);
    }
  });

  it("rejects when the stored record is unreadable", () => {
    const decision = mergeText(Keep, null, '{"a": "1"}', "not json");
    assert.ok(decision instanceof Reject);
    assert.match(decision.reason, /stored record/);
  });
});

describe("the component's export", () => {
  const exported = component(Keep);

  it("speaks the WIT contract's shapes", () => {
    assert.deepEqual(exported.merge('{"a":"1"}', undefined), { tag: "write", val: '{"a":"1"}' });
    assert.deepEqual(exported.merge('{"a":"1"}', '{"a":"0"}'), { tag: "skip", val: "kept" });
    assert.equal(exported.merge('{"boom":"1"}', undefined).tag, "reject");
    assert.equal(exported.schema(), "{}");
    exported.validate('{"a":"1"}');
  });

  it("throws a field error for an invalid event", () => {
    assert.throws(() => exported.validate('{"bad":"1"}'), (e) => {
      assert.deepEqual(e, { field: "bad", message: "is not allowed" });
      return true;
    });
  });
});

describe("configuration", () => {
  it("is read with its defaults", () => {
    const e = new Entity({ key_field: "PatientId", version_field: "UpdatedAt" });
    assert.deepEqual([e.versionForm, e.requiredFields, e.stringsOnly], ["rfc3339", [], false]);
  });

  it("is refused naming its key, as the Rust SDK words it", () => {
    const cases = [
      [{}, "`key_field` is required"],
      [{ key_field: "Id" }, "`version_field` is required"],
      [{ key_field: 1, version_field: "V" }, "`key_field` must be a string"],
      [{ key_field: "", version_field: "V" }, "`key_field` must not be empty"],
      [{ key_field: "V", version_field: "V" }, "`version_field` must differ"],
      [{ key_field: "Id", version_field: "V", version_form: "julian" }, "`version_form` must be one of rfc3339, epoch_seconds"],
      [{ key_field: "Id", version_field: "V", required_fields: "A" }, "`required_fields` must be a list"],
      [{ key_field: "Id", version_field: "V", strings_only: "yes" }, "`strings_only` must be true or false"],
      [{ key_field: "Id", version_field: "V", colour: "red" }, "`colour` is not a key"],
      [{ key_field: "Id", version_field: "V", fields: { A: { exampel: 1 } } }, "`fields.A.exampel` is not a key"],
    ];
    for (const [config, expected] of cases) {
      assert.throws(() => new Entity(config), (e) => e instanceof ConfigError && e.message.includes(expected), JSON.stringify(config));
    }
    new Entity({ key_field: "Id", version_field: "V", mine: 1 }, ["mine"]);
  });

  it("must be a JSON object, and the policy's refusal is kept", () => {
    for (const text of ["[]", "nope", "1", "null"]) {
      assert.throws(() => configureText(Keep, text), ConfigError, text);
    }
    assert.throws(() => configureText(Keep, '{"a": 1}'), /takes none/);
  });

  it("compares numeric versions as numbers whatever their writing", () => {
    const v = (value) => parseVersion("sequence", value);
    assert.ok(compareVersions(v(10), v(9)) > 0);
    assert.ok(compareVersions(v("10"), v(9)) > 0);
    assert.equal(v("0009"), v(9));
    assert.ok(compareVersions(v("123456789012345678901234567890"), v(MAX_SAFE_INTEGER)) > 0);
    for (const bad of [-1, 1.5, MAX_SAFE_INTEGER + 1, "", "1e3", "-1", true, "\u0661"]) {
      assert.equal(v(bad), null, String(bad));
    }
    const e = new Entity({ key_field: "Id", version_field: "At", version_form: "epoch_millis" });
    assert.throws(() => e.version({ At: "soon" }), (err) => err.field === "At" && err.rule.startsWith("must be Unix time in milliseconds"));
  });

  it("writes a numeric version given as a JSON number as its whole number", () => {
    const seq = new Entity({ key_field: "Id", version_field: "Rev", version_form: "sequence" });
    for (const [written, plain] of [[-0, 0], ["0009", "0009"], [1.5, 1.5], [9, 9]]) {
      const record = { Id: "1", Rev: written };
      seq.normalize(record);
      assert.ok(Object.is(record.Rev, plain), String(written));
    }
  });

  it("checks an event naming the field in the order of flatUpdate", () => {
    const e = new Entity({ key_field: "PatientId", version_field: "UpdatedAt", strings_only: true });
    for (const [event, field] of [
      [{ PatientId: "1", IsPregnant: false, UpdatedAt: "x" }, "IsPregnant"],
      [{ PatientId: "", UpdatedAt: "2006-01-02T05:00:00Z" }, "PatientId"],
      [{ PatientId: "1" }, "UpdatedAt"],
    ]) {
      assert.throws(() => e.check(event), (err) => err.field === field, JSON.stringify(event));
    }
    const seq = new Entity({ key_field: "Id", version_field: "Rev", version_form: "sequence", strings_only: true, required_fields: ["Name"] });
    seq.check({ Id: "1", Rev: 3, Name: "A" });
    assert.throws(() => seq.check({ Id: "1", Rev: 3 }), (err) => err.field === "Name");
    assert.throws(() => seq.check({ Id: "1", Rev: 3, Name: 1 }), (err) => err.field === "Name");
  });

  it("makes the schema of the fields documented", () => {
    const e = new Entity({ key_field: "PatientId", version_field: "UpdatedAt", strings_only: true, fields: { PatientId: { example: "1" }, FirstName: { example: "John" } } });
    const schema = e.schema("An update.");
    assert.deepEqual(schema.required, ["PatientId"]);
    assert.deepEqual(schema.properties.PatientId, { type: "string", minLength: 1, example: "1" });
    assert.deepEqual(schema.properties.FirstName, { type: "string", example: "John" });
    assert.deepEqual(schema.properties.UpdatedAt, { type: "string", format: "date-time" });
    assert.deepEqual(schema.additionalProperties, { type: "string" });
  });

  it("is taken once by the export, which refuses a bad one with the reason", () => {
    const exported = component(Keep);
    assert.throws(() => exported.configure('{"a": 1}'), (e) => e === "takes none");
    exported.configure("{}");
    assert.throws(() => exported.configure("{}"), (e) => /configured already/.test(e));
  });
});

// The JavaScript last-writer-wins rule under a plain Node (its decisions against the Rust
// plugin's, over generated events, are in engine/tests/plugin_languages.rs).
import assert from "node:assert/strict";
import { it } from "node:test";

import { ConfigError, Reject, Skip, Write, configureText, mergeText, validateText } from "../sdk-js/ordo_policy.js";
import { readFileSync } from "node:fs";

import { Lww, PATIENT_PROFILE } from "./app.js";

const PATIENT = configureText(Lww, JSON.stringify({ key_field: "PatientId", version_field: "UpdatedAt", strings_only: true }));
const PRACTITIONER = configureText(
  Lww,
  JSON.stringify({ key_field: "PractitionerId", version_field: "Revision", version_form: "sequence", required_fields: ["Name"] }),
);

const EVENT1 = '{"PatientId":"1","FirstName":"John","LastName":"Doe","IsPregnant":"False","UpdatedAt":"2006-01-02T15:00:00.000000000+10:00"}';
const EVENT2 = '{"PatientId":"1","FirstName":"John","LastName":"Doe","IsPregnant":"True","UpdatedAt":"2006-01-02T15:00:00.500000000+10:00"}';

const merge = (incoming, stored, config = PATIENT) => mergeText(Lww, config, incoming, stored);

it("writes the newer, skips the older, writes the first", () => {
  assert.ok(merge(EVENT2, EVENT1) instanceof Write);
  assert.ok(merge(EVENT1, EVENT2) instanceof Skip);
  assert.ok(merge(EVENT1, null) instanceof Write);
});

it("orders by instant, not text", () => {
  const utc = EVENT1.replace("2006-01-02T15:00:00.000000000+10:00", "2006-01-02T05:00:00.6Z");
  assert.ok(merge(utc, EVENT2) instanceof Write);
  assert.ok(merge(EVENT2, utc) instanceof Skip);
});

it("converges on ties whatever the order", () => {
  const other = EVENT1.replace('"Doe"', '"Roe"');
  const one = merge(EVENT1, other);
  const two = merge(other, EVENT1);
  const first = one instanceof Write ? one.record : merge(other, null).record;
  const second = two instanceof Write ? two.record : merge(EVENT1, null).record;
  assert.equal(first, second);
});

it("rejects a different key", () => {
  assert.ok(merge(EVENT2, EVENT1.replace('"1"', '"2"')) instanceof Reject);
  assert.ok(merge(EVENT2, EVENT1.replace('"1"', "1")) instanceof Reject);
});

it("replaces a stored record without a version", () => {
  assert.ok(merge(EVENT1, '{"PatientId":"1"}') instanceof Write);
});

it("merges another entity by its own key and sequence", () => {
  const r9 = '{"PractitionerId":"7","Name":"Ann","Revision":9}';
  const r10 = '{"PractitionerId":"7","Name":"Bea","Revision":"10"}';
  assert.ok(merge(r10, r9, PRACTITIONER) instanceof Write);
  assert.ok(merge(r9, r10, PRACTITIONER) instanceof Skip);
  assert.throws(() => validateText(Lww, PRACTITIONER, '{"PractitionerId":"7","Revision":1}'), (e) => e.field === "Name");
});

it("refuses a configuration without its key field", () => {
  assert.throws(
    () => configureText(Lww, '{"version_field":"UpdatedAt"}'),
    (e) => e instanceof ConfigError && e.message.includes("`key_field` is required"),
  );
});

it("takes no configuration as the patient profile's, the sample file's", () => {
  const sample = JSON.parse(readFileSync(new URL("../samples/patient-profile.config.json", import.meta.url), "utf8"));
  assert.deepEqual(PATIENT_PROFILE, sample);
  const none = configureText(Lww, "{}");
  assert.throws(() => validateText(Lww, none, '{"PatientId":"1","IsPregnant":true}'));
});

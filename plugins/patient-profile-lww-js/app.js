// Ordo policy plugin for patient profiles, in JavaScript: whole-record last-writer-wins on the
// instant of `UpdatedAt`. The same rule as `plugins/patient-profile-lww` (Rust), decision for
// decision: built by `make plugins` into `plugins/build/patient_profile_lww_js.wasm`.
import { Reject, Skip, Write, canonical, compareText, component, flatUpdate, timestamp } from "../sdk-js/ordo_policy.js";

const KEY_FIELD = "PatientId";
const VERSION_FIELD = "UpdatedAt";

const SCHEMA = `{
  "type": "object",
  "description": "A patient profile update. Every field is a string.",
  "required": ["PatientId"],
  "properties": {
    "PatientId": {"type": "string", "minLength": 1, "description": "The patient's id; the Kafka key and the table's partition key.", "example": "1"},
    "FirstName": {"type": "string", "example": "John"},
    "LastName": {"type": "string", "example": "Doe"},
    "IsPregnant": {"type": "string", "example": "False"},
    "Sex": {"type": "string", "example": "Female"},
    "UpdatedAt": {"type": "string", "format": "date-time", "description": "When the profile changed (RFC 3339, any offset). Stamped with the time of receipt when absent.", "example": "2006-01-02T15:00:00.5+10:00"}
  },
  "additionalProperties": {"type": "string"}
}`;

export const Lww = {
  SCHEMA,

  validate(event) {
    flatUpdate(event, KEY_FIELD, VERSION_FIELD);
  },

  // The newer event replaces the whole record. Equal instants with different bodies are
  // settled by comparing the serialised records, so every replica converges on the same
  // record whatever order the events arrive in.
  merge(incoming, stored) {
    const version = timestamp(incoming, VERSION_FIELD);
    let current = null;
    try {
      current = stored === null ? null : timestamp(stored, VERSION_FIELD);
    } catch {
      current = null;
    }
    // A stored record without a readable version cannot be ordered: the valid event wins.
    if (current === null) return new Write(incoming);
    // The incoming key is a non-empty string (validated); the stored one may be anything.
    if (incoming[KEY_FIELD] !== stored[KEY_FIELD]) {
      return new Reject(`${KEY_FIELD} differs from the stored record's`);
    }
    if (version > current) return new Write(incoming);
    if (version < current) return new Skip(`stale: ${VERSION_FIELD} is older than the stored record's`);
    if (compareText(canonical(incoming), canonical(stored)) > 0) return new Write(incoming);
    return new Skip(`${VERSION_FIELD} equals the stored record's and the stored record wins the tie`);
  },
};

export const policy = component(Lww);

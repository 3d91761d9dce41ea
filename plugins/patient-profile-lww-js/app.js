// Ordo policy plugin in JavaScript: whole-record last-writer-wins for any entity, its key,
// version and version form set by the pipeline's `plugin_config` (`Entity`; named for the
// patient profile, its first user). The same rule as `plugins/patient-profile-lww` (Rust),
// decision for decision: built by `make plugins` into
// `plugins/build/patient_profile_lww_js.wasm`.
import { Entity, Reject, Skip, Write, canonical, compareText, compareVersions, component } from "../sdk-js/ordo_policy.js";

const DESCRIPTION = "An update of one record, which replaces the record when its version is newer.";

// No configuration at all (no `plugin_config` table) is the patient profile's, as this plugin
// was before it took one (plugins/samples/patient-profile.config.json; a test keeps them equal).
export const PATIENT_PROFILE = {"key_field": "PatientId", "version_field": "UpdatedAt", "version_form": "rfc3339", "required_fields": [], "strings_only": true, "description": "A patient profile update. Every field is a string.", "fields": {"PatientId": {"description": "The patient's id; the Kafka key and the table's partition key.", "example": "1"}, "FirstName": {"example": "John"}, "LastName": {"example": "Doe"}, "IsPregnant": {"example": "False"}, "Sex": {"example": "Female"}, "UpdatedAt": {"description": "When the profile changed (RFC 3339, any offset). Stamped with the time of receipt when absent.", "example": "2006-01-02T15:00:00.5+10:00"}}};

export const Lww = {
  configure(config) {
    return new Entity(Object.keys(config).length === 0 ? PATIENT_PROFILE : config);
  },

  schema(entity) {
    return JSON.stringify(entity.schema(DESCRIPTION));
  },

  validate(entity, event) {
    entity.check(event);
  },

  // The newer event replaces the whole record. Equal versions with different bodies are
  // settled by comparing the serialised records, so every replica converges on the same
  // record whatever order the events arrive in.
  merge(entity, incoming, stored) {
    const [keyField, versionField] = [entity.keyField, entity.versionField];
    entity.normalize(incoming);
    if (stored !== null) entity.normalize(stored);
    const version = entity.version(incoming);
    let current = null;
    try {
      current = stored === null ? null : entity.version(stored);
    } catch {
      current = null;
    }
    // A stored record without a readable version cannot be ordered: the valid event wins.
    if (current === null) return new Write(incoming);
    // The incoming key is a non-empty string (validated); the stored one may be anything.
    if (incoming[keyField] !== stored[keyField]) {
      return new Reject(`${keyField} differs from the stored record's`);
    }
    const order = compareVersions(version, current);
    if (order > 0) return new Write(incoming);
    if (order < 0) return new Skip(`stale: ${versionField} is older than the stored record's`);
    if (compareText(canonical(incoming), canonical(stored)) > 0) return new Write(incoming);
    return new Skip(`${versionField} equals the stored record's and the stored record wins the tie`);
  },
};

export const policy = component(Lww);

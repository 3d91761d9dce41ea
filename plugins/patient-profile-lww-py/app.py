"""Ordo policy plugin for patient profiles, in Python: whole-record last-writer-wins on the
instant of `UpdatedAt`. The same rule as `plugins/patient-profile-lww` (Rust), decision for
decision: built by `make plugins` into `plugins/build/patient_profile_lww_py.wasm`."""
from ordo_policy import Reject, Skip, Write, canonical, component, flat_update, timestamp

KEY_FIELD = "PatientId"
VERSION_FIELD = "UpdatedAt"

SCHEMA = """{
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
}"""


class Lww:
    SCHEMA = SCHEMA

    @staticmethod
    def validate(event):
        flat_update(event, KEY_FIELD, VERSION_FIELD)

    @staticmethod
    def merge(incoming, stored):
        """The newer event replaces the whole record. Equal instants with different bodies are
        settled by comparing the serialised records, so every replica converges on the same
        record whatever order the events arrive in."""
        version = timestamp(incoming, VERSION_FIELD)
        try:
            current = None if stored is None else timestamp(stored, VERSION_FIELD)
        except Exception:
            current = None
        # A stored record without a readable version cannot be ordered: the valid event wins.
        if current is None:
            return Write(incoming)
        if incoming.get(KEY_FIELD) != stored.get(KEY_FIELD):
            return Reject(f"{KEY_FIELD} differs from the stored record's")
        if version > current:
            return Write(incoming)
        if version < current:
            return Skip(f"stale: {VERSION_FIELD} is older than the stored record's")
        if canonical(incoming) > canonical(stored):
            return Write(incoming)
        return Skip(f"{VERSION_FIELD} equals the stored record's and the stored record wins the tie")


Policy = component(Lww)

"""Ordo policy plugin in Python: whole-record last-writer-wins for any entity, its key,
version and version form set by the pipeline's `plugin_config` (`ordo_policy.Entity`; named
for the patient profile, its first user). The same rule as `plugins/patient-profile-lww`
(Rust), decision for decision: built by `make plugins` into
`plugins/build/patient_profile_lww_py.wasm`."""
import json

from ordo_policy import Entity, Reject, Skip, Write, canonical, component

DESCRIPTION = "An update of one record, which replaces the record when its version is newer."

# No configuration at all (no `plugin_config` table) is the patient profile's, as this plugin
# was before it took one (plugins/samples/patient-profile.config.json; a test keeps them equal).
PATIENT_PROFILE = json.loads("""{"key_field": "PatientId", "version_field": "UpdatedAt", "version_form": "rfc3339", "required_fields": [], "strings_only": true, "description": "A patient profile update. Every field is a string.", "fields": {"PatientId": {"description": "The patient's id; the Kafka key and the table's partition key.", "example": "1"}, "FirstName": {"example": "John"}, "LastName": {"example": "Doe"}, "IsPregnant": {"example": "False"}, "Sex": {"example": "Female"}, "UpdatedAt": {"description": "When the profile changed (RFC 3339, any offset). Stamped with the time of receipt when absent.", "example": "2006-01-02T15:00:00.5+10:00"}}}""")


class Lww:
    @staticmethod
    def configure(config):
        return Entity(config or PATIENT_PROFILE)

    @staticmethod
    def schema(entity):
        return json.dumps(entity.schema(DESCRIPTION))

    @staticmethod
    def validate(entity, event):
        entity.check(event)

    @staticmethod
    def merge(entity, incoming, stored):
        """The newer event replaces the whole record. Equal versions with different bodies are
        settled by comparing the serialised records, so every replica converges on the same
        record whatever order the events arrive in."""
        key_field, version_field = entity.key_field, entity.version_field
        entity.normalize(incoming)
        if stored is not None:
            entity.normalize(stored)
        version = entity.version(incoming)
        try:
            current = None if stored is None else entity.version(stored)
        except Exception:
            current = None
        # A stored record without a readable version cannot be ordered: the valid event wins.
        if current is None:
            return Write(incoming)
        if incoming.get(key_field) != stored.get(key_field):
            return Reject(f"{key_field} differs from the stored record's")
        if version > current:
            return Write(incoming)
        if version < current:
            return Skip(f"stale: {version_field} is older than the stored record's")
        if canonical(incoming) > canonical(stored):
            return Write(incoming)
        return Skip(f"{version_field} equals the stored record's and the stored record wins the tie")


Policy = component(Lww)

"""The Python last-writer-wins rule under a plain CPython (its decisions against the Rust
plugin's, over generated events, are in engine/tests/plugin_languages.rs)."""
import json
import unittest

from app import Lww
from ordo_policy import ConfigError, Invalid, Reject, Skip, Write, configure_text, merge_text, validate_text

PATIENT = configure_text(Lww, json.dumps({
    "key_field": "PatientId", "version_field": "UpdatedAt", "strings_only": True,
}))
PRACTITIONER = configure_text(Lww, json.dumps({
    "key_field": "PractitionerId", "version_field": "Revision", "version_form": "sequence",
    "required_fields": ["Name"],
}))

EVENT1 = '{"PatientId":"1","FirstName":"John","LastName":"Doe","IsPregnant":"False","UpdatedAt":"2006-01-02T15:00:00.000000000+10:00"}'
EVENT2 = '{"PatientId":"1","FirstName":"John","LastName":"Doe","IsPregnant":"True","UpdatedAt":"2006-01-02T15:00:00.500000000+10:00"}'


def merge(incoming, stored, config=PATIENT):
    return merge_text(Lww, config, incoming, stored)


class LastWriterWins(unittest.TestCase):
    def test_newer_replaces_older_is_skipped_first_is_written(self):
        self.assertIsInstance(merge(EVENT2, EVENT1), Write)
        self.assertIsInstance(merge(EVENT1, EVENT2), Skip)
        self.assertIsInstance(merge(EVENT1, None), Write)

    def test_order_is_by_instant_not_text(self):
        utc = EVENT1.replace("2006-01-02T15:00:00.000000000+10:00", "2006-01-02T05:00:00.6Z")
        self.assertIsInstance(merge(utc, EVENT2), Write)
        self.assertIsInstance(merge(EVENT2, utc), Skip)

    def test_ties_converge_whatever_the_order(self):
        other = EVENT1.replace('"Doe"', '"Roe"')
        one = merge(EVENT1, other)
        two = merge(other, EVENT1)
        first = one.record if isinstance(one, Write) else merge(other, None).record
        second = two.record if isinstance(two, Write) else merge(EVENT1, None).record
        self.assertEqual(first, second)

    def test_a_different_key_is_rejected(self):
        self.assertIsInstance(merge(EVENT2, EVENT1.replace('"1"', '"2"', 1)), Reject)

    def test_a_stored_record_without_a_version_is_replaced(self):
        self.assertIsInstance(merge(EVENT1, '{"PatientId":"1"}'), Write)


class AnotherEntity(unittest.TestCase):
    def test_it_merges_by_its_own_key_and_sequence(self):
        r9 = '{"PractitionerId":"7","Name":"Ann","Revision":9}'
        r10 = '{"PractitionerId":"7","Name":"Bea","Revision":"10"}'
        self.assertIsInstance(merge(r10, r9, PRACTITIONER), Write)
        self.assertIsInstance(merge(r9, r10, PRACTITIONER), Skip)
        with self.assertRaises(Invalid) as caught:
            validate_text(Lww, PRACTITIONER, '{"PractitionerId":"7","Revision":1}')
        self.assertEqual(caught.exception.field, "Name")

    def test_a_configuration_without_its_key_field_is_refused(self):
        with self.assertRaises(ConfigError) as caught:
            configure_text(Lww, '{"version_field": "UpdatedAt"}')
        self.assertIn("`key_field` is required", str(caught.exception))

    def test_no_configuration_is_the_patient_profile_sample(self):
        import os
        from app import PATIENT_PROFILE
        sample = os.path.join(os.path.dirname(__file__), "..", "samples", "patient-profile.config.json")
        with open(sample) as f:
            self.assertEqual(PATIENT_PROFILE, json.load(f))
        none = configure_text(Lww, "{}")
        with self.assertRaises(Invalid):
            validate_text(Lww, none, '{"PatientId":"1","IsPregnant":true}')


if __name__ == "__main__":
    unittest.main()

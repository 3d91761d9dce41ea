"""The Python last-writer-wins rule under a plain CPython (its decisions against the Rust
plugin's, over generated events, are in engine/tests/plugin_languages.rs)."""
import unittest

from app import Lww
from ordo_policy import Reject, Skip, Write, merge_text

EVENT1 = '{"PatientId":"1","FirstName":"John","LastName":"Doe","IsPregnant":"False","UpdatedAt":"2006-01-02T15:00:00.000000000+10:00"}'
EVENT2 = '{"PatientId":"1","FirstName":"John","LastName":"Doe","IsPregnant":"True","UpdatedAt":"2006-01-02T15:00:00.500000000+10:00"}'


def merge(incoming, stored):
    return merge_text(Lww, incoming, stored)


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


if __name__ == "__main__":
    unittest.main()

"""The Python SDK under a plain CPython: `python3 -m unittest discover -s plugins/sdk-py`."""
import unittest

from ordo_policy import (Invalid, Reject, Skip, Write, canonical, flat_update, merge_text,
                         parse_timestamp, validate_text)

NS = 1_000_000_000


class Timestamps(unittest.TestCase):
    def test_offsets_denote_the_same_instant(self):
        self.assertEqual(parse_timestamp("2006-01-02T15:00:00.5+10:00"),
                         parse_timestamp("2006-01-02T05:00:00.5Z"))
        self.assertEqual(parse_timestamp("1970-01-01T00:00:01Z"), NS)
        self.assertEqual(parse_timestamp("1970-01-01T01:00:00+01:00"), 0)
        self.assertEqual(parse_timestamp("1969-12-31T23:59:59.999999999Z"), -1)

    def test_nanoseconds_are_kept(self):
        self.assertEqual(parse_timestamp("1970-01-01T00:00:00.000000001Z"), 1)
        self.assertEqual(parse_timestamp("1970-01-01T00:00:00.1z"), NS // 10)

    def test_it_reads_what_the_rust_sdk_reads(self):
        # `T`, `t` or a space between date and time, any number of fraction digits, year 0,
        # U+2212 as a minus sign, a leap second at the end of any minute: chrono's RFC 3339,
        # which the Rust plugins use (engine/tests/plugin_languages.rs compares them over
        # generated events).
        self.assertEqual(parse_timestamp("1970-01-01 00:00:01Z"), NS)
        self.assertEqual(parse_timestamp("1970-01-01t00:00:01Z"), NS)
        self.assertIsNone(parse_timestamp("1970-01-01_00:00:01Z"))
        self.assertEqual(parse_timestamp("1970-01-01T00:00:00\u221201:00"), 3600 * NS)
        self.assertEqual(parse_timestamp("1970-01-01T00:30:60+00:00"), 1860 * NS - 1)
        self.assertEqual(parse_timestamp("1970-01-01T00:00:00.1234567899Z"), 123456789)
        self.assertEqual(parse_timestamp("0000-03-01T00:00:00Z"), -62162035200 * NS)
        self.assertEqual(parse_timestamp("2016-12-31T23:59:60Z"), 1483228800 * NS - 1)
        self.assertEqual(parse_timestamp("2017-01-01T00:59:60.5+01:00"), 1483228800 * NS - 1)

class Validation(unittest.TestCase):
    def test_errors_name_the_field(self):
        cases = [
            ({"UpdatedAt": "2006-01-02T15:00:00Z"}, "PatientId", "is required"),
            ({"PatientId": "", "UpdatedAt": "2006-01-02T15:00:00Z"}, "PatientId", "must not be empty"),
            ({"PatientId": "1", "Z": 1, "A": True, "UpdatedAt": "x"}, "A", "must be a string"),
            ({"PatientId": "1"}, "UpdatedAt", "is required"),
            ({"PatientId": "1", "UpdatedAt": "yesterday"}, "UpdatedAt", "must be an RFC 3339"),
        ]
        for event, field, message in cases:
            with self.subTest(event=event):
                with self.assertRaises(Invalid) as caught:
                    flat_update(event, "PatientId", "UpdatedAt")
                self.assertEqual(caught.exception.field, field)
                self.assertTrue(caught.exception.message.startswith(message))

    def test_a_body_that_is_not_an_object_is_refused_as_a_whole(self):
        # Also what the Rust SDK's parser refuses and Python's would take.
        deep = '{"a":' + "[" * 127 + "]" * 127 + "}"
        for text in ["[]", "\"x\"", "{", "null", '{"a": NaN}', '{"a": -Infinity}',
                     '{"a": "\\ud800"}', '{"a": 1e400}', '{"\\udc00": "x"}', deep]:
            with self.subTest(text=text):
                with self.assertRaises(Invalid) as caught:
                    validate_text(_Keep, text)
                self.assertEqual(caught.exception.field, "")


class _Keep:
    SCHEMA = "{}"

    @staticmethod
    def validate(event):
        if "bad" in event:
            raise Invalid("bad", "is not allowed")

    @staticmethod
    def merge(incoming, stored):
        if "boom" in incoming:
            raise ZeroDivisionError("division by zero")
        if "odd" in incoming:
            return 42
        return Write(incoming) if stored is None else Skip("kept")


class Parsing(unittest.TestCase):
    def test_what_the_rust_sdk_takes_is_taken(self):
        pair = '{"a": "\\ud83d\\ude00", "b": "[{\\"}]"}'
        self.assertEqual(merge_text(_Keep, pair, None).record, '{"a":"😀","b":"[{\\"}]"}')
        nested = '{"a":' + "[" * 126 + "]" * 126 + "}"
        self.assertIsInstance(merge_text(_Keep, nested, None), Write)


class Merging(unittest.TestCase):
    def test_a_record_is_written_as_compact_sorted_json(self):
        decision = merge_text(_Keep, '{"b": "é", "a": "\\n"}', None)
        self.assertIsInstance(decision, Write)
        self.assertEqual(decision.record, '{"a":"\\n","b":"é"}')
        self.assertEqual(canonical({"b": 1, "a": [1, 2]}), '{"a":[1,2],"b":1}')

    def test_an_invalid_event_is_rejected_naming_its_field(self):
        decision = merge_text(_Keep, '{"bad": "1"}', None)
        self.assertIsInstance(decision, Reject)
        self.assertIn("bad", decision.reason)

    def test_a_failing_policy_rejects_the_event_and_says_why(self):
        decision = merge_text(_Keep, '{"boom": "1"}', None)
        self.assertIsInstance(decision, Reject)
        self.assertIn("ZeroDivisionError", decision.reason)
        decision = merge_text(_Keep, '{"odd": "1"}', None)
        self.assertIsInstance(decision, Reject)
        self.assertIn("int", decision.reason)

    def test_an_unreadable_stored_record_is_a_reject(self):
        decision = merge_text(_Keep, '{"a": "1"}', "not json")
        self.assertIsInstance(decision, Reject)
        self.assertIn("stored record", decision.reason)


if __name__ == "__main__":
    unittest.main()

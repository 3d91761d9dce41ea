"""The Python SDK under a plain CPython: `python3 -m unittest discover -s plugins/sdk-py`."""
import unittest

from ordo_policy import (MAX_SAFE_INTEGER, ConfigError, Entity, Invalid, Reject, Skip, Write,
                         canonical, configure_text, flat_update, merge_text, parse_timestamp,
                         parse_version, validate_text)

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
                    validate_text(_Keep, None, text)
                self.assertEqual(caught.exception.field, "")


class _Keep:
    @staticmethod
    def configure(config):
        if config:
            raise ConfigError("takes none")

    @staticmethod
    def schema(config):
        return "{}"

    @staticmethod
    def validate(config, event):
        if "bad" in event:
            raise Invalid("bad", "is not allowed")

    @staticmethod
    def merge(config, incoming, stored):
        if "boom" in incoming:
            raise ZeroDivisionError("division by zero")
        if "odd" in incoming:
            return 42
        return Write(incoming) if stored is None else Skip("kept")


class Parsing(unittest.TestCase):
    def test_what_the_rust_sdk_takes_is_taken(self):
        pair = '{"a": "\\ud83d\\ude00", "b": "[{\\"}]"}'
        self.assertEqual(merge_text(_Keep, None, pair, None).record, '{"a":"😀","b":"[{\\"}]"}')
        nested = '{"a":' + "[" * 126 + "]" * 126 + "}"
        self.assertIsInstance(merge_text(_Keep, None, nested, None), Write)


class Merging(unittest.TestCase):
    def test_a_record_is_written_as_compact_sorted_json(self):
        decision = merge_text(_Keep, None, '{"b": "é", "a": "\\n"}', None)
        self.assertIsInstance(decision, Write)
        self.assertEqual(decision.record, '{"a":"\\n","b":"é"}')
        self.assertEqual(canonical({"b": 1, "a": [1, 2]}), '{"a":[1,2],"b":1}')

    def test_an_invalid_event_is_rejected_naming_its_field(self):
        decision = merge_text(_Keep, None, '{"bad": "1"}', None)
        self.assertIsInstance(decision, Reject)
        self.assertIn("bad", decision.reason)

    def test_a_failing_policy_rejects_the_event_and_says_why(self):
        decision = merge_text(_Keep, None, '{"boom": "1"}', None)
        self.assertIsInstance(decision, Reject)
        self.assertIn("ZeroDivisionError", decision.reason)
        decision = merge_text(_Keep, None, '{"odd": "1"}', None)
        self.assertIsInstance(decision, Reject)
        self.assertIn("int", decision.reason)

    def test_an_unreadable_stored_record_is_a_reject(self):
        decision = merge_text(_Keep, None, '{"a": "1"}', "not json")
        self.assertIsInstance(decision, Reject)
        self.assertIn("stored record", decision.reason)


class Configuration(unittest.TestCase):
    def test_a_configuration_is_read_with_its_defaults(self):
        e = Entity({"key_field": "PatientId", "version_field": "UpdatedAt"})
        self.assertEqual((e.version_form, e.required_fields, e.strings_only), ("rfc3339", [], False))

    def test_a_bad_configuration_is_refused_naming_its_key(self):
        # The Rust SDK's cases and messages (plugins/sdk/src/entity.rs).
        cases = [
            ({}, "`key_field` is required"),
            ({"key_field": "Id"}, "`version_field` is required"),
            ({"key_field": 1, "version_field": "V"}, "`key_field` must be a string"),
            ({"key_field": "", "version_field": "V"}, "`key_field` must not be empty"),
            ({"key_field": "V", "version_field": "V"}, "`version_field` must differ"),
            ({"key_field": "Id", "version_field": "V", "version_form": "julian"},
             "`version_form` must be one of rfc3339, epoch_seconds"),
            ({"key_field": "Id", "version_field": "V", "required_fields": "A"}, "`required_fields` must be a list"),
            ({"key_field": "Id", "version_field": "V", "strings_only": "yes"}, "`strings_only` must be true or false"),
            ({"key_field": "Id", "version_field": "V", "colour": "red"}, "`colour` is not a key"),
            ({"key_field": "Id", "version_field": "V", "fields": {"A": {"exampel": 1}}}, "`fields.A.exampel` is not a key"),
        ]
        for config, expected in cases:
            with self.subTest(config=config):
                with self.assertRaises(ConfigError) as caught:
                    Entity(config)
                self.assertIn(expected, str(caught.exception))
        Entity({"key_field": "Id", "version_field": "V", "mine": 1}, also=["mine"])

    def test_a_configuration_text_must_be_an_object(self):
        for text in ["[]", "nope", "1"]:
            with self.assertRaises(ConfigError):
                configure_text(_Keep, text)
        with self.assertRaises(ConfigError):
            configure_text(_Keep, '{"a": 1}')

    def test_numeric_versions_compare_as_numbers_whatever_their_writing(self):
        v = lambda value: parse_version("sequence", value)
        self.assertGreater(v(10), v(9))
        self.assertGreater(v("10"), v(9))
        self.assertEqual(v("0009"), v(9))
        self.assertEqual(v(9.0), v(9))
        self.assertGreater(v("123456789012345678901234567890"), v(MAX_SAFE_INTEGER))
        for bad in [-1, 1.5, MAX_SAFE_INTEGER + 1, "", "1e3", "-1", True, "\u0661"]:
            self.assertIsNone(v(bad), bad)
        e = Entity({"key_field": "Id", "version_field": "At", "version_form": "epoch_millis"})
        with self.assertRaises(Invalid) as caught:
            e.version({"At": "soon"})
        self.assertEqual(caught.exception.field, "At")
        self.assertTrue(caught.exception.message.startswith("must be Unix time in milliseconds"))

    def test_a_numeric_version_written_as_a_json_number_is_normalised(self):
        seq = Entity({"key_field": "Id", "version_field": "Rev", "version_form": "sequence"})
        for written, plain in [(9.0, 9), (1000.0, 1000), (-0.0, 0), ("0009", "0009"), (1.5, 1.5)]:
            record = {"Id": "1", "Rev": written}
            seq.normalize(record)
            self.assertEqual(record["Rev"], plain)
            self.assertEqual(type(record["Rev"]), type(plain))

    def test_check_names_the_field_in_the_order_of_flat_update(self):
        e = Entity({"key_field": "PatientId", "version_field": "UpdatedAt", "strings_only": True})
        cases = [
            ({"PatientId": "1", "IsPregnant": False, "UpdatedAt": "x"}, "IsPregnant"),
            ({"PatientId": "", "UpdatedAt": "2006-01-02T05:00:00Z"}, "PatientId"),
            ({"PatientId": "1"}, "UpdatedAt"),
        ]
        for event, field in cases:
            with self.assertRaises(Invalid) as caught:
                e.check(event)
            self.assertEqual(caught.exception.field, field)
        seq = Entity({"key_field": "Id", "version_field": "Rev", "version_form": "sequence",
                      "strings_only": True, "required_fields": ["Name"]})
        seq.check({"Id": "1", "Rev": 3, "Name": "A"})
        for event, field in [({"Id": "1", "Rev": 3}, "Name"), ({"Id": "1", "Rev": 3, "Name": 1}, "Name")]:
            with self.assertRaises(Invalid) as caught:
                seq.check(event)
            self.assertEqual(caught.exception.field, field)

    def test_the_schema_carries_the_fields_documented(self):
        e = Entity({"key_field": "PatientId", "version_field": "UpdatedAt", "strings_only": True,
                    "fields": {"PatientId": {"example": "1"}, "FirstName": {"example": "John"}}})
        schema = e.schema("An update.")
        self.assertEqual(schema["required"], ["PatientId"])
        self.assertEqual(schema["properties"]["PatientId"], {"type": "string", "minLength": 1, "example": "1"})
        self.assertEqual(schema["properties"]["FirstName"], {"type": "string", "example": "John"})
        self.assertEqual(schema["properties"]["UpdatedAt"], {"type": "string", "format": "date-time"})
        self.assertEqual(schema["additionalProperties"], {"type": "string"})


if __name__ == "__main__":
    unittest.main()

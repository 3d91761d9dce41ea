"""The consume benchmark's Quix Streams peer: topic to DynamoDB, written as a Python team would
write the job by hand.

Each message is a patient profile (JSON). It is written to the table with one conditional put:
the write goes through when the table has no record for the patient, or when the stored
record's `UpdatedAt` is older than the event's. No read, no merge: the condition is the whole
rule. `UpdatedAt` is compared as a string, which orders instants only while every producer
writes them in one format and one offset (the benchmark's events do); Ordo's plugin parses
them instead.

Offsets are Quix Streams' own (at-least-once, committed every `commit_interval`, 5 s by
default), and errors other than a failed condition stop the application, as its default
error handling does.

    quix_app.py --broker 127.0.0.1:9092 --topic T --table TABLE \
        --endpoint http://127.0.0.1:4566 --group G

The benchmark (bench/src/peers/quix.rs) starts it, and judges it by what the table holds; this
program reports nothing of its own.
"""

import argparse

import boto3
from botocore.exceptions import ClientError
from quixstreams import Application

KEY_FIELD = "PatientId"
VERSION_FIELD = "UpdatedAt"


def arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", required=True, help="Kafka bootstrap servers")
    parser.add_argument("--topic", required=True, help="the topic of patient profiles")
    parser.add_argument("--table", required=True, help="the DynamoDB table (key PatientId)")
    parser.add_argument("--endpoint", required=True, help="the DynamoDB endpoint URL")
    parser.add_argument("--group", required=True, help="the Kafka consumer group")
    return parser.parse_args()


def main():
    args = arguments()
    table = boto3.resource("dynamodb", endpoint_url=args.endpoint).Table(args.table)

    def write(profile):
        try:
            table.put_item(
                Item=profile,
                ConditionExpression="attribute_not_exists(#k) OR #v < :v",
                ExpressionAttributeNames={"#k": KEY_FIELD, "#v": VERSION_FIELD},
                ExpressionAttributeValues={":v": profile[VERSION_FIELD]},
            )
        except ClientError as error:
            # The stored record is as new or newer: the event changes nothing.
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    app = Application(
        broker_address=args.broker,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        # The topic exists (the benchmark made it); a job does not create its input.
        auto_create_topics=False,
        loglevel="WARNING",
    )
    profiles = app.dataframe(app.topic(args.topic, value_deserializer="json"))
    profiles = profiles.update(write)
    app.run()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Readiness probes that need a real protocol answer.

    probe.py kafka HOST:PORT      Kafka Metadata request; ready when a broker is listed.
    probe.py dynamodb URL         DynamoDB ListTables; ready when it answers.

Exit 0 when ready, 1 otherwise (the reason on stderr). Uses only the standard library for
Kafka and boto3 (from the stack's virtualenv) for DynamoDB.
"""
import socket
import struct
import sys


def kafka(address: str) -> str:
    host, port = address.rsplit(":", 1)
    client_id = b"ordo-probe"
    # Metadata v0, correlation id 7, null topic list = all topics.
    body = struct.pack(">hhih", 3, 0, 7, len(client_id)) + client_id + struct.pack(">i", 0)
    with socket.create_connection((host, int(port)), timeout=3) as s:
        s.settimeout(3)
        s.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _read(s, 4))[0]
        data = _read(s, size)
    correlation, brokers = struct.unpack(">ii", data[:8])
    if correlation != 7 or brokers < 1:
        raise RuntimeError(f"unexpected metadata answer (correlation {correlation}, {brokers} brokers)")
    node, host_len = struct.unpack(">ih", data[8:14])
    advertised = data[14 : 14 + host_len].decode()
    (advertised_port,) = struct.unpack(">i", data[14 + host_len : 18 + host_len])
    return f"broker {node} advertised at {advertised}:{advertised_port}"


def _read(s: socket.socket, n: int) -> bytes:
    chunks = b""
    while len(chunks) < n:
        chunk = s.recv(n - len(chunks))
        if not chunk:
            raise RuntimeError("connection closed by the broker")
        chunks += chunk
    return chunks


def dynamodb(url: str) -> str:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "dynamodb",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(connect_timeout=2, read_timeout=3, retries={"max_attempts": 0}),
    )
    tables = client.list_tables()["TableNames"]
    return f"{len(tables)} tables"


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] not in ("kafka", "dynamodb"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        print(globals()[sys.argv[1]](sys.argv[2]))
        return 0
    except Exception as e:  # any failure means "not ready"; say why
        print(f"{sys.argv[1]} at {sys.argv[2]} not ready: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""``produce``: replay records into Kafka."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from flowsentinel import environment
from flowsentinel.cli.common import PROBE_ROWS, SYNTHETIC_RATE, UsageError, _check_files, _file_batches
from flowsentinel.progress import progress_bar


# ----------------------------------------------------------------------------------------- produce
def cmd_produce(args: argparse.Namespace) -> int:
    if environment.value("COMPRESSION") is not None and environment.value("PRODUCE_COMPRESSION") is None:
        print(
            "flowsentinel produce: note: FLOWSENTINEL_COMPRESSION is detect's codec (alerts, dead letters), not "
            f"produce's; writing with {args.compression} (set FLOWSENTINEL_PRODUCE_COMPRESSION)",
            file=sys.stderr,
        )
    if environment.value("TOPIC") is not None and environment.value("INPUT_TOPIC") is None:
        print(
            "flowsentinel produce: note: FLOWSENTINEL_TOPIC is the older name of FLOWSENTINEL_INPUT_TOPIC, the "
            "name detect and retrain read too; it still works here",
            file=sys.stderr,
        )
    from flowsentinel.detector.schema import load_schema
    from flowsentinel.kafka.admin import ensure_topics
    from flowsentinel.producers.files import iter_batches
    from flowsentinel.producers.publisher import Pacer, Publisher, publish, replay_producer
    from flowsentinel.producers.synthetic import SyntheticTraffic

    synthetic = args.schema == "synthetic"
    speedup = 1.0 if args.realtime else args.speedup
    if synthetic:
        if args.data:
            raise UsageError("--data is not used with 'synthetic'")
        rate = args.rate or SYNTHETIC_RATE
        pacer = Pacer(rate=rate)
        gen = SyntheticTraffic(seed=args.seed, hosts=args.hosts, attack_every_s=args.attack_every)
        schema = gen.schema

        source: Any = gen.stream(rate=rate)
    else:
        schema = load_schema(args.schema)
        if not args.data:
            raise UsageError("--data PATH is required (or use 'synthetic')")
        _check_files(args.data, "--data")
        for path in args.data:  # a wrong file is named before anything connects, not after a broker error
            for _ in _file_batches(path, schema, "--data", max_rows=PROBE_ROWS):
                pass
        pacer = Pacer(rate=args.rate, speedup=speedup)

        def file_batches():
            while True:
                for path in args.data:
                    yield from iter_batches(path, schema)
                if not args.loop:
                    return
                pacer.restart_clock()

        source = file_batches()
    from flowsentinel.kafka.conn import KafkaUnreachable
    from flowsentinel.kafka.connection import client_security

    try:
        connection, security = client_security(
            args.bootstrap_servers, vars(args), environment.for_command("produce")
        )
    except KafkaUnreachable as exc:  # not a bad argument: exit 1, as for a failed delivery
        print(f"flowsentinel produce: error: {exc}", file=sys.stderr)
        return 1
    ensure_topics(args.bootstrap_servers, {args.topic: args.partitions}, security=security)
    from flowsentinel.kafka.client import resolve_client

    producer = replay_producer(
        args.bootstrap_servers,
        client=resolve_client(connection.kafka_client),
        compression=args.compression,
        linger_ms=args.linger_ms,
        batch_bytes=args.batch_bytes,
        config=connection.client_config(security),
    )
    publisher = Publisher(args.topic, producer)
    bar = progress_bar(total=args.limit, quiet=args.quiet, unit="rec", desc=f"→ {args.topic}")
    limit = args.limit if (args.limit or not synthetic) else None
    try:
        summary = publish(
            source,
            publisher,
            pacer,
            key_field=schema.key,
            ts_field=schema.timestamp,
            limit=limit,
            on_progress=bar.update,
        )
    except KeyboardInterrupt:
        summary = publisher.summary
        print("interrupted", file=sys.stderr)
    finally:
        bar.close()
        publisher.close()
    report = summary.as_dict()
    print(
        f"sent {report['sent']:,}  failed {report['failed']:,}  skipped {report['skipped']:,} "
        f"{report['skipped_reasons'] or ''} in {report['seconds']}s ({report['records_per_second'] or 0:,} rec/s)"
    )
    for err in summary.first_errors:
        print(f"  {err}", file=sys.stderr)
    return 0 if summary.failed == 0 else 1

"""``models``, ``retrain`` and ``sign``: the model store."""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial

import numpy as np

from flowsentinel import environment
from flowsentinel.cli.common import UsageError, _model_key, _read_files
from flowsentinel.progress import progress_bar


# ------------------------------------------------------------------------------------ models, retrain
def cmd_models(args: argparse.Namespace) -> int:
    from flowsentinel.detector.store import ModelStore

    store = ModelStore(args.store)
    if args.action in ("add", "shadow") and not args.model:
        raise UsageError(
            f"models {args.action} needs MODEL_DIR{'|VERSION' if args.action == 'shadow' else ''}"
        )
    if args.action == "add":
        version = store.add(args.model)
        print(f"added {version}")
        if args.live:
            store.set("live", version, reason=args.reason, action="add")
            print(f"live: {version}")
    elif args.action == "shadow":
        version = args.model if (store.versions / args.model).is_dir() else store.add(args.model)
        store.set("shadow", version, reason=args.reason, action="shadow")
        print(f"shadow: {version} (live: {store.version_of('live')})")
    elif args.action == "promote":
        old, new = store.promote(reason=args.reason)
        print(f"promoted {new} to live (previous: {old})")
    elif args.action == "rollback":
        old, new = store.rollback(reason=args.reason)
        print(f"rolled back: live {old} -> {new}")
    else:
        print(json.dumps(store.describe(), indent=1))
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from flowsentinel.detector.artifact import load_artifact
    from flowsentinel.detector.store import ModelStore
    from flowsentinel.kafka.conn import KafkaUnreachable
    from flowsentinel.kafka.connection import client_security
    from flowsentinel.retrain import judged_positions, read_topic, recent_normal, retrain

    store = ModelStore(args.model_store)
    key = _model_key(args)
    live = load_artifact(store.path("live"), key=key)
    if args.synthetic:
        from flowsentinel.producers.synthetic import normal_training_records, to_batch

        original = to_batch(normal_training_records(args.synthetic, seed=args.seed or 0))
    else:
        data = _read_files(args.data, live.schema, "--data", args.limit, args.max_reject_share)
        normal = data.is_normal
        original = data if normal is None else data.take(np.flatnonzero(normal))
    try:
        connection, _ = client_security(
            args.bootstrap_servers, vars(args), environment.for_command("retrain")
        )
    except KafkaUnreachable as exc:
        print(f"flowsentinel retrain: error: {exc}", file=sys.stderr)
        return 1
    options = connection.kafka_common()
    messages = read_topic(options, args.topic, args.recent)
    judged = judged_positions(read_topic(options, args.alerts_topic, None),
                              read_topic(options, args.feedback_topic, None))  # fmt: skip
    recent, counts = recent_normal(live, messages, judged, risk=args.risk)
    overrides = {k: getattr(args, k) for k in ("epochs", "seed") if getattr(args, k) is not None}
    model = retrain(live, original, recent, overrides=overrides,
                    progress=partial(progress_bar, quiet=args.quiet))  # fmt: skip
    version = store.add(model, key=key)
    store.set("shadow", version, reason=f"retrain: {counts['kept']:,} recent records", action="retrain")
    summary = {"shadow": version, "live": live.version, "original_records": len(original), "recent": counts}
    print(json.dumps(summary))
    return 0


# -------------------------------------------------------------------------------------------- sign
def cmd_sign(args: argparse.Namespace) -> int:
    from flowsentinel.detector.artifact import sign_artifact

    key = _model_key(args, env=True)
    if key is None:
        raise UsageError("no key: pass --model-key-file FILE or set FLOWSENTINEL_MODEL_KEY")
    key_id = sign_artifact(args.model, key)
    print(f"signed {args.model} with key {key_id}")
    return 0

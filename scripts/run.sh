#!/usr/bin/env bash
# Install into .venv (first run only) and start the main job: the detector on a live stream.
# With nothing configured this starts an embedded Kafka-protocol broker, trains a small model on synthetic
# normal traffic, runs the detector service and the synthetic traffic generator, and shows what happens
# live until Ctrl+C. Arguments go to `flowsentinel demo`, e.g.
#   scripts/run.sh --bootstrap-servers kafka:9092      # use an existing Kafka instead
#   scripts/run.sh --model models/nsl-kdd --rate 2000
set -euo pipefail
. "$(dirname "$0")/_venv.sh" broker
exec flowsentinel demo "$@"

"""Kafka plumbing, below producers and consumers alike: the client layer (one interface, kafka-python and
librdkafka underneath; :mod:`.client`), connection probing and the TLS context (:mod:`.conn`), and topic
admin (:mod:`.admin`), the connection settings every command shares (bootstrap, client, TLS, SASL;
:mod:`.connection`) and secrets (:mod:`.secret`). It imports nothing of flowsentinel but
:mod:`flowsentinel.detector`'s errors and text helpers; the values that feed it are read by the commands."""

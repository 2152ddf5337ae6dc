"""A built-in synthetic traffic generator writing KDD-schema connection records.

Normal traffic: many internal hosts, each with a role (workstation, web server, mail relay, file server,
resolver client), producing http, smtp, ftp/ftp_data, domain_u, ntp (private/udp), telnet and ICMP echo
connections whose 41 KDD features are drawn consistently (flag with error rates, service with protocol and
byte counts, window statistics with each other). Attack episodes are injected on a schedule, each from one
source host for a few seconds, labelled with their KDD attack name:

- ``neptune`` — SYN flood (S0 flags, zero bytes, high counts, serror rates 1);
- ``smurf`` — ICMP echo-reply flood (ecr_i, 520/1032-byte payloads, count 511);
- ``portsweep`` — probes across many services (REJ/RSTR, rerror rates 1, many distinct services);
- ``ipsweep`` — ICMP echo sweep across hosts (eco_i, tiny payloads, many destination hosts);
- ``guess_passwd`` — telnet password guessing (failed logins, short sessions);
- ``teardrop`` — overlapping UDP fragments (wrong_fragment 3).

Records are JSON-ready dicts with the schema's field names plus ``src_host`` (the entity key), ``ts``
(epoch seconds), ``label`` and ``schema``/``schema_version``, exactly what ``flowsentinel detect`` reads.

>>> gen = SyntheticTraffic(seed=1, attack_every_s=0)
>>> rec = gen.records(1, start=0.0, rate=100.0)[0]
>>> rec["schema"], rec["label"], len([k for k in rec if k in KDD_FEATURES])
('kdd', 'normal', 41)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from flowsentinel.detector.schema import KDD_FEATURES, builtin_schema

ATTACKS = ("neptune", "smurf", "portsweep", "ipsweep", "guess_passwd", "teardrop")
ROLES = {  # service mix per host role
    "workstation": {
        "http": 0.55,
        "domain_u": 0.25,
        "smtp": 0.05,
        "ftp_data": 0.05,
        "eco_i": 0.03,
        "private": 0.07,
    },
    "webserver": {"http": 0.8, "domain_u": 0.1, "private": 0.1},
    "mailrelay": {"smtp": 0.7, "domain_u": 0.25, "http": 0.05},
    "fileserver": {"ftp_data": 0.5, "ftp": 0.2, "http": 0.1, "domain_u": 0.1, "telnet": 0.1},
}
ROLE_MIX = {"workstation": 0.7, "webserver": 0.1, "mailrelay": 0.1, "fileserver": 0.1}


@dataclass
class _Episode:
    kind: str
    host: str
    start: float
    end: float
    share: float  # fraction of records during the episode that belong to it


def _base(rng: np.random.Generator) -> dict[str, Any]:
    rec: dict[str, Any] = dict.fromkeys(KDD_FEATURES, 0)
    rec.update(protocol_type="tcp", service="http", flag="SF")
    return rec


def _rate(rng: np.random.Generator, hi: float = 0.05) -> float:
    return round(float(rng.uniform(0, hi)) if rng.random() < 0.2 else 0.0, 2)


def _normal(rng: np.random.Generator, service: str) -> dict[str, Any]:
    r = _base(rng)
    count = int(rng.integers(1, 25))
    srv = max(1, int(count * rng.uniform(0.5, 1.0)))
    dst_count = int(rng.integers(5, 256))
    dst_srv = max(1, int(dst_count * rng.uniform(0.3, 1.0)))
    r.update(
        count=count,
        srv_count=srv,
        same_srv_rate=round(srv / count, 2),
        diff_srv_rate=_rate(rng, 0.1),
        srv_diff_host_rate=_rate(rng, 0.3),
        dst_host_count=dst_count,
        dst_host_srv_count=dst_srv,
        dst_host_same_srv_rate=round(dst_srv / dst_count, 2),
        dst_host_diff_srv_rate=_rate(rng, 0.1),
        dst_host_same_src_port_rate=_rate(rng, 0.2),
        dst_host_srv_diff_host_rate=_rate(rng, 0.1),
        serror_rate=_rate(rng, 0.02),
        rerror_rate=_rate(rng, 0.02),
        dst_host_serror_rate=_rate(rng, 0.02),
        dst_host_rerror_rate=_rate(rng, 0.03),
    )
    r["srv_serror_rate"], r["dst_host_srv_serror_rate"] = r["serror_rate"], r["dst_host_serror_rate"]
    r["srv_rerror_rate"], r["dst_host_srv_rerror_rate"] = r["rerror_rate"], r["dst_host_rerror_rate"]
    lognorm = lambda m, s: int(rng.lognormal(np.log(m), s))  # noqa: E731
    if service == "http":
        r.update(
            service="http",
            src_bytes=lognorm(260, 0.3),
            dst_bytes=lognorm(3000, 1.0),
            logged_in=1,
            duration=0 if rng.random() < 0.9 else int(rng.integers(1, 5)),
        )
    elif service == "smtp":
        r.update(
            service="smtp",
            src_bytes=lognorm(1200, 0.6),
            dst_bytes=lognorm(330, 0.1),
            logged_in=1,
            duration=int(rng.integers(0, 3)),
        )
    elif service == "ftp_data":
        r.update(
            service="ftp_data",
            src_bytes=lognorm(6000, 1.5),
            dst_bytes=0 if rng.random() < 0.8 else lognorm(2000, 1.0),
            logged_in=1,
            duration=int(rng.integers(0, 3)),
        )
    elif service == "ftp":
        r.update(
            service="ftp",
            src_bytes=lognorm(300, 0.5),
            dst_bytes=lognorm(800, 0.5),
            logged_in=1,
            duration=int(rng.integers(2, 60)),
            hot=int(rng.integers(0, 3)),
        )
    elif service == "telnet":
        r.update(
            service="telnet",
            src_bytes=lognorm(400, 0.8),
            dst_bytes=lognorm(2500, 0.8),
            logged_in=1,
            duration=int(rng.integers(5, 600)),
            hot=int(rng.integers(0, 4)),
        )
    elif service == "domain_u":
        r.update(
            protocol_type="udp",
            service="domain_u",
            src_bytes=int(rng.integers(28, 60)),
            dst_bytes=int(rng.integers(60, 250)),
            count=int(rng.integers(1, 150)),
        )
        r["srv_count"] = r["count"]
        r["same_srv_rate"] = 1.0
    elif service == "private":
        r.update(protocol_type="udp", service="private", src_bytes=48, dst_bytes=48)
    elif service == "eco_i":
        r.update(
            protocol_type="icmp",
            service="eco_i",
            src_bytes=int(rng.choice([8, 18, 20, 64])),
            dst_bytes=0,
            count=int(rng.integers(1, 4)),
        )
        r["srv_count"] = r["count"]
    return r


def _attack(rng: np.random.Generator, kind: str) -> dict[str, Any]:
    r = _base(rng)
    if kind == "neptune":
        c = int(rng.integers(100, 512))
        r.update(
            service=str(rng.choice(["private", "http", "telnet", "ftp", "smtp"])),
            flag="S0",
            count=c,
            srv_count=int(rng.integers(1, 30)),
            serror_rate=1.0,
            srv_serror_rate=1.0,
            same_srv_rate=round(float(rng.uniform(0.01, 0.1)), 2),
            diff_srv_rate=0.06,
            dst_host_count=255,
            dst_host_srv_count=int(rng.integers(1, 30)),
            dst_host_same_srv_rate=0.05,
            dst_host_diff_srv_rate=0.07,
            dst_host_serror_rate=1.0,
            dst_host_srv_serror_rate=1.0,
        )
    elif kind == "smurf":
        r.update(
            protocol_type="icmp",
            service="ecr_i",
            src_bytes=int(rng.choice([520, 1032])),
            count=511,
            srv_count=511,
            same_srv_rate=1.0,
            dst_host_count=255,
            dst_host_srv_count=255,
            dst_host_same_srv_rate=1.0,
            dst_host_same_src_port_rate=1.0,
        )
    elif kind == "portsweep":
        r.update(
            service=str(rng.choice(["private", "other", "finger", "sunrpc", "imap4", "pop_3"])),
            flag=str(rng.choice(["REJ", "RSTR", "RSTOS0"])),
            duration=int(rng.integers(0, 3)),
            count=int(rng.integers(1, 5)),
            srv_count=1,
            rerror_rate=1.0,
            srv_rerror_rate=1.0,
            same_srv_rate=0.5,
            dst_host_count=int(rng.integers(1, 10)),
            dst_host_srv_count=1,
            dst_host_diff_srv_rate=round(float(rng.uniform(0.6, 1.0)), 2),
            dst_host_same_src_port_rate=1.0,
            dst_host_rerror_rate=1.0,
            dst_host_srv_rerror_rate=1.0,
        )
    elif kind == "ipsweep":
        r.update(
            protocol_type="icmp",
            service="eco_i",
            src_bytes=18,
            count=1,
            srv_count=int(rng.integers(1, 40)),
            srv_diff_host_rate=1.0,
            dst_host_count=int(rng.integers(1, 60)),
            dst_host_srv_count=int(rng.integers(40, 256)),
            dst_host_same_srv_rate=1.0,
            dst_host_same_src_port_rate=1.0,
            dst_host_srv_diff_host_rate=0.5,
        )
    elif kind == "guess_passwd":
        r.update(
            service="telnet",
            flag=str(rng.choice(["SF", "RSTO"])),
            duration=int(rng.integers(2, 6)),
            src_bytes=int(rng.integers(120, 135)),
            dst_bytes=int(rng.integers(170, 190)),
            num_failed_logins=1,
            count=1,
            srv_count=1,
            same_srv_rate=1.0,
            dst_host_count=int(rng.integers(1, 30)),
            dst_host_srv_count=int(rng.integers(1, 30)),
            dst_host_same_srv_rate=1.0,
            dst_host_rerror_rate=round(float(rng.uniform(0.3, 1.0)), 2),
        )
    elif kind == "teardrop":
        r.update(
            protocol_type="udp",
            service="private",
            src_bytes=28,
            wrong_fragment=3,
            count=int(rng.integers(1, 120)),
            srv_count=int(rng.integers(1, 120)),
            same_srv_rate=1.0,
            dst_host_count=int(rng.integers(1, 255)),
            dst_host_srv_count=int(rng.integers(1, 255)),
        )
    else:
        raise ValueError(f"unknown attack {kind!r}")
    return r


class SyntheticTraffic:
    """Deterministic for a seed. ``records(n, start, rate)`` continues the stream: ``n`` records with
    timestamps ``1/rate`` apart from ``start``; attack episodes follow the schedule in that timeline."""

    def __init__(
        self,
        *,
        seed: int = 0,
        hosts: int = 200,
        attack_every_s: float = 30.0,
        attack_duration_s: tuple[float, float] = (5.0, 12.0),
        attack_share: float = 0.3,
        attacks: tuple[str, ...] = ATTACKS,
    ) -> None:
        if hosts < 1:
            raise ValueError(f"hosts = {hosts!r} must be >= 1")
        unknown = [a for a in attacks if a not in ATTACKS]
        if unknown:
            raise ValueError(f"unknown attack {unknown[0]!r}: choose from {', '.join(ATTACKS)}")
        self.rng = np.random.default_rng(seed)
        self.hosts = [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(hosts)]
        roles = list(ROLE_MIX)
        self.role = dict(
            zip(self.hosts, self.rng.choice(roles, size=hosts, p=list(ROLE_MIX.values())), strict=True)
        )
        self.activity = self.rng.pareto(1.5, size=hosts) + 1.0  # a few busy hosts, many quiet ones
        self.activity /= self.activity.sum()
        self.attack_every_s = attack_every_s
        self.attack_duration_s = attack_duration_s
        self.attack_share = attack_share
        self.attacks = attacks
        self._next_attack: float | None = None
        self._episode: _Episode | None = None
        self._kind_cycle = 0
        self.schema = builtin_schema("kdd")

    def _schedule(self, t: float) -> _Episode | None:
        if self.attack_every_s <= 0:
            return None
        if self._next_attack is None:
            self._next_attack = t + self.attack_every_s * 0.5
        if self._episode is not None and t >= self._episode.end:
            self._episode = None
        if self._episode is None and t >= self._next_attack:
            kind = self.attacks[self._kind_cycle % len(self.attacks)]
            self._kind_cycle += 1
            lo, hi = self.attack_duration_s
            host = f"203.0.113.{int(self.rng.integers(1, 255))}"
            self._episode = _Episode(kind, host, t, t + float(self.rng.uniform(lo, hi)), self.attack_share)
            self._next_attack = t + self.attack_every_s
        return self._episode

    def records(self, n: int, *, start: float, rate: float) -> list[dict[str, Any]]:
        out = []
        rng = self.rng
        host_idx = rng.choice(len(self.hosts), size=n, p=self.activity)
        for i in range(n):
            t = start + i / rate
            ep = self._schedule(t)
            if ep is not None and rng.random() < ep.share:
                rec = _attack(rng, ep.kind)
                rec.update(src_host=ep.host, label=ep.kind)
            else:
                host = self.hosts[host_idx[i]]
                mix = ROLES[self.role[host]]
                service = str(rng.choice(list(mix), p=list(mix.values())))
                rec = _normal(rng, service)
                rec.update(src_host=host, label="normal")
            rec.update(ts=round(t, 6), schema=self.schema.name, schema_version=self.schema.version)
            out.append(rec)
        return out

    def stream(
        self, *, rate: float, chunk: int = 500, start: float | None = None, limit: int | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """Endless (or ``limit``-record) chunks of the stream, timestamped ``1/rate`` apart from ``start``
        (default: now). Lazy: a consumer that stops pulling stops the generator."""
        t = time.time() if start is None else start
        made = 0
        while limit is None or made < limit:
            k = chunk if limit is None else min(chunk, limit - made)
            yield self.records(k, start=t, rate=rate)
            t += k / rate
            made += k

    @property
    def current_episode(self) -> str | None:
        return None if self._episode is None else f"{self._episode.kind} from {self._episode.host}"


def normal_training_records(n: int, *, seed: int = 0, hosts: int = 200) -> list[dict[str, Any]]:
    """``n`` attack-free records (for training the demo's model)."""
    return SyntheticTraffic(seed=seed, hosts=hosts, attack_every_s=0).records(n, start=0.0, rate=1000.0)


def to_batch(records: list[dict[str, Any]], position: Callable[[int], str] = lambda i: f"synthetic #{i}"):
    """Validate generated records through the same path as every other record."""
    from flowsentinel.detector.schema import parse_table

    schema = builtin_schema("kdd")
    table = {f: [r.get(f) for r in records] for f in schema.fields}
    return parse_table(schema, table, [position(i) for i in range(len(records))])

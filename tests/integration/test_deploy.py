"""deploy/ checked with real tools: the compose file, promtool on the alert rules, and every Grafana panel's
query run against a live Prometheus that scrapes a live detector service."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from flowsentinel.broker import free_port
from flowsentinel.consumers.main import start_service
from flowsentinel.producers.synthetic import SyntheticTraffic, normal_training_records
from tests.support import REPO, create_topics, make_settings, produce_raw, produce_records, wait_for

pytestmark = pytest.mark.integration
DEPLOY = REPO / "deploy"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{tool} is not installed; .ci/run installs it (apt-get)")
        pytest.skip(f"{tool} is not installed")
    return path


def test_compose_file_is_valid():
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        cmd = [docker, "compose", "-f", str(DEPLOY / "docker-compose.yml"), "config", "-q"]
    else:
        cmd = [need("docker-compose"), "-f", str(DEPLOY / "docker-compose.yml"), "config", "-q"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_alert_rules_check_and_unit_tests_pass():
    promtool = need("promtool")
    rules = DEPLOY / "prometheus" / "rules"
    r = subprocess.run(
        [promtool, "check", "rules", str(rules / "flowsentinel.rules.yml")], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(
        [promtool, "test", "rules", str(rules / "flowsentinel.rules.test.yml")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(DEPLOY / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_alertmanager_config_is_valid():
    amtool = need("amtool")
    r = subprocess.run(
        [amtool, "check-config", str(DEPLOY / "alertmanager" / "alertmanager.yml")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_rule_has_a_firing_unit_test_and_a_runbook_that_exists():
    import yaml

    rules_dir = DEPLOY / "prometheus" / "rules"
    rules = [
        r
        for g in yaml.safe_load((rules_dir / "flowsentinel.rules.yml").read_text())["groups"]
        for r in g["rules"]
    ]
    tests = yaml.safe_load((rules_dir / "flowsentinel.rules.test.yml").read_text())["tests"]
    fired = {c["alertname"] for t in tests for c in t.get("alert_rule_test", []) if c["exp_alerts"]}
    quiet = {c["alertname"] for t in tests for c in t.get("alert_rule_test", []) if not c["exp_alerts"]}
    names = {r["alert"] for r in rules}
    assert names - fired == set(), "rules no test fires"
    assert names - quiet == set(), "rules no test shows silent"
    runbooks = (REPO / "docs" / "runbooks.md").read_text()
    anchors = {h.strip().lower() for h in re.findall(r"^## (\w+)$", runbooks, flags=re.M)}
    for rule in rules:
        url = rule["annotations"]["runbook_url"]
        assert url == f"docs/runbooks.md#{rule['alert'].lower()}", url
        assert url.split("#")[1] in anchors, f"{rule['alert']}: no runbook section"
        assert "{{ $value }}" not in str(rule["annotations"]), "print values through humanize"


def test_systemd_unit_exposure_is_at_most_3():
    analyze = need("systemd-analyze")
    unit = DEPLOY / "systemd" / "flowsentinel-detector.service"
    r = subprocess.run([analyze, "security", "--offline=true", str(unit)], capture_output=True, text=True)
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout + r.stderr)
    assert found, r.stdout + r.stderr
    assert float(found.group(1)) <= 3.0, r.stdout


def test_systemd_unit_stops_with_sigterm_and_reloads_with_sighup():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "systemd" / "flowsentinel-detector.service")
    svc = unit["Service"]
    assert svc["ExecStart"].endswith("flowsentinel detect")
    assert svc["KillSignal"] == "SIGTERM" and "HUP" in svc["ExecReload"]
    assert int(svc["TimeoutStopSec"]) >= 20
    env_keys = [  # the settings and the commented-out examples alike
        line.removeprefix("#").split("=")[0]
        for line in (DEPLOY / "systemd" / "detector.env").read_text().splitlines()
        if line.removeprefix("#").startswith("FLOWSENTINEL_")
    ]
    from flowsentinel.consumers.settings import Settings

    names = {f"FLOWSENTINEL_{f.upper()}" for f in Settings.__dataclass_fields__}
    assert set(env_keys) <= names, set(env_keys) - names


def _as_run(expr: str) -> str:
    """A panel's query as Grafana sends it with every variable at 'All'."""
    for name, value in (
        ("$__rate_interval", "15s"),
        ("$__range", "1m"),
        ("$instance", ".*"),
        ("$topic", ".*"),
    ):
        expr = expr.replace(name, value)
    return expr


def _query(port: int, expr: str) -> dict:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    return json.loads(urllib.request.urlopen(url, timeout=10).read())


def test_every_dashboard_panel_query_returns_data_from_a_live_prometheus(
    bootstrap, names, model_dir, tmp_path
):
    prometheus = need("prometheus")
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "flowsentinel.json").read_text())
    create_topics(bootstrap, names)
    running = start_service(make_settings(bootstrap, names, model_dir))
    prom_port = free_port()
    config = tmp_path / "prometheus.yml"
    rules = DEPLOY / "prometheus" / "rules" / "flowsentinel.rules.yml"  # for the firing-alerts panel
    config.write_text(
        f"global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: ['{rules}']\n"
        f"scrape_configs:\n  - job_name: flowsentinel\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{running.server.port}']}}]\n"
    )
    prom = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: running.service.state.assigned, 30, "assignment")
        gen = SyntheticTraffic(seed=2, attack_every_s=2.0)
        odd = normal_training_records(5, seed=3)
        for r in odd:
            r["service"] = "gopher-never-seen"
        deadline = time.monotonic() + 14
        while time.monotonic() < deadline:  # ~1 s batches of traffic, so rates have something to show
            produce_records(
                bootstrap, names["input"], gen.records(400, start=time.time(), rate=400) + odd[:1]
            )
            produce_raw(bootstrap, names["input"], [(None, b"garbage")])
            time.sleep(1.0)

        def has_data() -> bool:
            try:
                return bool(_query(prom_port, "flowsentinel_records_scored_total")["data"]["result"])
            except OSError:
                return False

        wait_for(has_data, 30, "Prometheus to scrape the service")
        time.sleep(3)
        empty = []
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):  # (rows have none)
                expr = _as_run(target["expr"])
                reply = _query(prom_port, expr)
                assert reply["status"] == "success", (panel["title"], expr, reply)
                if not reply["data"]["result"]:
                    empty.append((panel["title"], expr))
        assert not empty, f"panels without data: {empty}"
        # annotations fire on events this run may not have: each query must run, and every metric it
        # reads must exist
        for note in dashboard["annotations"]["list"]:
            if "expr" not in note:
                continue
            reply = _query(prom_port, _as_run(note["expr"]))
            assert reply["status"] == "success", (note["name"], reply)
            for name in set(re.findall(r"flowsentinel_\w+", note["expr"])):
                assert _query(prom_port, name)["data"]["result"], (note["name"], name)
        # the variables list this instance and the input topic
        for var in dashboard["templating"]["list"]:
            m = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"]["query"])
            assert m, var["query"]
            url = f"http://127.0.0.1:{prom_port}/api/v1/label/{m[2]}/values?" + urllib.parse.urlencode(
                {"match[]": m[1]}
            )
            values = json.loads(urllib.request.urlopen(url, timeout=10).read())["data"]
            expected = f"127.0.0.1:{running.server.port}" if m[2] == "instance" else names["input"]
            assert expected in values, (var["name"], values)
    finally:
        prom.terminate()
        prom.wait(10)
        running.shutdown()


def test_dashboard_is_provisioned_from_the_compose_file():
    compose = (DEPLOY / "docker-compose.yml").read_text()
    assert "./grafana/dashboards:/var/lib/grafana/dashboards" in compose
    provider = (DEPLOY / "grafana" / "provisioning" / "dashboards" / "flowsentinel.yml").read_text()
    assert "/var/lib/grafana/dashboards" in provider
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "flowsentinel.json").read_text())
    assert dash["uid"] == "flowsentinel" and len(dash["panels"]) >= 12
    assert {t["datasource"]["uid"] for p in dash["panels"] for t in p.get("targets", [])} == {"prometheus"}
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:  # no two panels overlap on Grafana's 24-column grid
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
    cells = [(p["gridPos"]["x"] + dx, p["gridPos"]["y"] + dy, p["title"]) for p in dash["panels"]
             for dx in range(p["gridPos"]["w"]) for dy in range(p["gridPos"]["h"])]  # fmt: skip
    assert len({c[:2] for c in cells}) == len(cells), "overlapping panels"
    queries = " ".join(t["expr"] for p in dash["panels"] for t in p.get("targets", []))
    assert queries.count('instance=~"$instance"') >= 20, "every panel follows the instance variable"
    assert Path(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").is_file()

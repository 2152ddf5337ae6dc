"""Render every panel of the Grafana dashboard from a real run, for readers without a Grafana.

Starts the embedded broker, a detector service (a small model trained on synthetic normal traffic unless
--model names one), and a Prometheus server with the alert rules scraping it; streams synthetic traffic with
attack episodes, some malformed records and unseen categories for --minutes, asks the service to reload
its model half way; then runs each panel's queries over the run with Prometheus' range API (every variable
at 'All') and draws the panels in the dashboard's layout with matplotlib, annotations as vertical lines.

    python scripts/render_dashboard.py --minutes 5 --out docs/dashboard.png

Needs the `prometheus` binary and the `broker` and `eval` extras (matplotlib).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "flowsentinel.json"
RULES = REPO / "deploy" / "prometheus" / "rules" / "flowsentinel.rules.yml"
SCRAPE_S, STEP_S = 2, 5


def api(port: int, path: str, **params: Any) -> Any:
    url = f"http://127.0.0.1:{port}/api/v1/{path}?" + urllib.parse.urlencode(params)
    reply = json.loads(urllib.request.urlopen(url, timeout=30).read())
    if reply["status"] != "success":
        raise RuntimeError(f"{path} {params}: {reply}")
    return reply["data"]


def as_run(expr: str, range_s: float) -> str:
    for name, value in (
        ("$__rate_interval", f"{4 * SCRAPE_S}s"),
        ("$__range", f"{int(range_s)}s"),
        ("$instance", ".*"),
        ("$topic", ".*"),
    ):
        expr = expr.replace(name, value)
    return expr


def legend(fmt: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt).strip() or ", ".join(
        f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("job",)
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Stream traffic through a real service scraped by a real Prometheus; return the query results."""
    sys.path.insert(0, str(REPO))
    from kafka import KafkaProducer

    from flowsentinel.broker import EmbeddedBroker, free_port
    from flowsentinel.consumers.main import start_service
    from flowsentinel.consumers.settings import Settings
    from flowsentinel.kafka.admin import ensure_topics
    from flowsentinel.producers.publisher import Publisher, replay_producer
    from flowsentinel.producers.synthetic import SyntheticTraffic, normal_training_records

    prometheus = shutil.which("prometheus")
    if prometheus is None:
        raise SystemExit("render_dashboard: needs the prometheus binary (apt-get install prometheus)")
    work = Path(tempfile.mkdtemp(prefix="flowsentinel-dashboard-"))
    # two models behind a symlink: half way the link moves to the other, and the service reloads (what a
    # deployment of a new model does), so the reload annotation has something to mark
    models = [Path(args.model)] * 2 if args.model else [train_model(work, seed) for seed in (0, 1)]
    live = work / "live"
    live.symlink_to(models[0].resolve())
    model = str(live)
    dashboard = json.loads(DASHBOARD.read_text())
    with EmbeddedBroker(log_path=None) as broker:
        ensure_topics(broker.bootstrap, {"records": 4, "alerts": 1, "dead": 1})
        settings = Settings(
            bootstrap_servers=broker.bootstrap, input_topic="records", alerts_topic="alerts",
            dead_letter_topic="dead", feedback_topic="", group="render", model=model, metrics_port=0,
            session_timeout_ms=6000, heartbeat_interval_ms=1000, episode_quiet_s=5.0, episode_update_s=10.0,
            risk=0.002, state_dir="", batch_size=500,
        )  # fmt: skip
        running = start_service(settings)
        prom_port = free_port()
        config = work / "prometheus.yml"
        config.write_text(
            f"global: {{scrape_interval: {SCRAPE_S}s, evaluation_interval: {SCRAPE_S}s}}\n"
            f"rule_files: ['{RULES}']\nscrape_configs:\n  - job_name: flowsentinel\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{running.server.port}']}}]\n"
        )
        prom = subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={work / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        publisher = Publisher("records", replay_producer(broker.bootstrap, compression="lz4"))
        raw = KafkaProducer(bootstrap_servers=broker.bootstrap)
        gen = SyntheticTraffic(seed=7, attack_every_s=45.0, hosts=400)
        odd = normal_training_records(50, seed=3)
        for r in odd:
            r["service"] = "gopher-never-seen"
        try:
            start = time.time()
            end = start + 60 * args.minutes
            reloaded = False
            i = 0
            while time.time() < end:
                t0 = time.time()
                records = gen.records(args.rate, start=t0, rate=args.rate)
                if i % 7 == 0:
                    records.append(odd[i % len(odd)])
                for r in records:
                    publisher.send(r, str(r["src_host"]))
                if i % 5 == 0:
                    raw.send("records", b"not json")
                publisher.flush()
                raw.flush()
                if not reloaded and t0 > start + 30 * args.minutes:
                    swap = work / "live.new"
                    swap.symlink_to(models[1].resolve())
                    swap.replace(live)
                    running.service.reload_requested.set()  # what SIGHUP does
                    reloaded = True
                i += 1
                time.sleep(max(0.0, 1.0 - (time.time() - t0)))
            time.sleep(3 * SCRAPE_S)
            stop = time.time()
            out: dict[str, Any] = {"start": start, "end": stop, "panels": [], "annotations": []}
            for panel in dashboard["panels"]:
                if panel["type"] == "row":
                    out["panels"].append({"panel": panel, "series": []})
                    continue
                series = []
                for target in panel["targets"]:
                    expr = as_run(target["expr"], stop - start)
                    if target.get("instant") or panel["type"] == "stat":
                        data = api(prom_port, "query", query=expr, time=stop)["result"]
                        for r in data:
                            series.append((legend(target["legendFormat"], r["metric"]), r["metric"],
                                           [[stop, r["value"][1]]]))  # fmt: skip
                    else:
                        data = api(prom_port, "query_range", query=expr, start=start, end=stop, step=STEP_S)
                        for r in data["result"]:
                            series.append(
                                (legend(target["legendFormat"], r["metric"]), r["metric"], r["values"])
                            )
                out["panels"].append({"panel": panel, "series": series})
            for note in dashboard["annotations"]["list"]:
                if "expr" in note and note.get("enable"):
                    data = api(prom_port, "query_range", query=as_run(note["expr"], 0), start=start, end=stop,
                               step=STEP_S)  # fmt: skip
                    times = sorted({float(v[0]) for r in data["result"] for v in r["values"]})
                    out["annotations"].append(
                        {"name": note["name"], "color": note["iconColor"], "times": times}
                    )
            return out
        finally:
            publisher.close()
            raw.close()
            prom.terminate()
            prom.wait(10)
            running.shutdown()


def train_model(work: Path, seed: int) -> Path:
    from flowsentinel.detector.artifact import save_artifact
    from flowsentinel.detector.train import TrainConfig, train
    from flowsentinel.producers.synthetic import normal_training_records, to_batch

    out = work / f"model-{seed}"
    batch = to_batch(normal_training_records(20_000, seed=1 + seed, hosts=400))
    cfg = TrainConfig(window=4, hidden=16, latent=6, epochs=6, seed=seed)
    save_artifact(train(batch, cfg, progress=False), out)
    return out


COLORS = {"green": "#37872D", "red": "#C4162A", "#EAB839": "#EAB839", "blue": "#1F60C4", "orange": "#FF780A",
          "purple": "#8F3BB8"}  # fmt: skip


def draw(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.dates import DateFormatter

    panels = result["panels"]
    height = max(p["panel"]["gridPos"]["y"] + p["panel"]["gridPos"]["h"] for p in panels)
    unit_w, unit_h = 0.75, 0.36  # inches per grid column / row
    fig = plt.figure(figsize=(24 * unit_w, height * unit_h), facecolor="#111217")
    plt.rcParams.update({"font.size": 8, "text.color": "#ccccdc", "axes.labelcolor": "#ccccdc",
                         "xtick.color": "#9fa7b3", "ytick.color": "#9fa7b3"})  # fmt: skip
    stamp = datetime.fromtimestamp(result["start"], tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    minutes = (result["end"] - result["start"]) / 60
    fig.suptitle(f"flowsentinel dashboard, rendered from a {minutes:.0f}-minute run on {stamp} "
                 "(scripts/render_dashboard.py)", color="#ccccdc", fontsize=11, y=0.999)  # fmt: skip
    for entry in panels:
        p, series = entry["panel"], entry["series"]
        g = p["gridPos"]
        left, width = g["x"] / 24, g["w"] / 24
        bottom = 1 - (g["y"] + g["h"]) / height
        if p["type"] == "row":
            fig.text(
                0.005, 1 - (g["y"] + 0.7) / height, p["title"], fontsize=11, weight="bold", color="#ccccdc"
            )
            continue
        ax = fig.add_axes(
            (left + 0.1 * width, bottom + 0.12 / height * 8, width * 0.87, g["h"] / height * 0.72)
        )
        ax.set_facecolor("#181b1f")
        ax.set_title(p["title"], loc="left", fontsize=9, color="#ccccdc")
        defaults = p["fieldConfig"]["defaults"]
        if p["type"] == "timeseries":
            draw_timeseries(ax, series, defaults, result, DateFormatter)
        elif p["type"] == "stat":
            draw_stat(ax, series, defaults)
        else:
            draw_table(ax, series)
    fig.savefig(out, dpi=90, facecolor=fig.get_facecolor())
    plt.close(fig)


def draw_timeseries(
    ax: Any, series: list[Any], defaults: dict[str, Any], result: dict[str, Any], fmt: Any
) -> None:
    from datetime import datetime as dt

    log = defaults.get("custom", {}).get("scaleDistribution", {}).get("type") == "log"
    drawn = 0
    for name, _, values in series:
        xs = [dt.fromtimestamp(float(t), tz=UTC) for t, v in values if _finite(v, log)]
        ys = [float(v) for t, v in values if _finite(v, log)]
        if xs:
            ax.plot(xs, ys, lw=1, label=name[:40])
            drawn += 1
    for step in defaults.get("thresholds", {}).get("steps", [])[1:]:
        ax.axhline(step["value"], color=COLORS.get(step["color"], step["color"]), lw=0.8, ls="--")
    for note in result["annotations"]:  # runs of consecutive points are one region, as Grafana draws them
        color = COLORS.get(note["color"], note["color"])
        for first, last in _runs(note["times"]):
            ax.axvline(dt.fromtimestamp(first, tz=UTC), color=color, lw=1.0)
            ax.axvspan(
                dt.fromtimestamp(first, tz=UTC), dt.fromtimestamp(last, tz=UTC), color=color, alpha=0.12
            )
    if log:
        ax.set_yscale("log")
    ax.xaxis.set_major_formatter(fmt("%H:%M"))
    ax.grid(color="#2c3235", lw=0.5)
    unit = defaults.get("unit", "")
    if unit:
        ax.set_ylabel(
            {"reqps": "per second", "percentunit": "share", "s": "seconds", "bytes": "bytes"}.get(unit, unit)
        )
    if drawn:
        ax.legend(
            fontsize=6,
            loc="upper left",
            ncol=2,
            facecolor="#181b1f",
            edgecolor="#2c3235",
            labelcolor="#ccccdc",
        )
    else:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", color="#9fa7b3")


def draw_stat(ax: Any, series: list[Any], defaults: dict[str, Any]) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    steps = defaults.get("thresholds", {}).get("steps", [])
    for i, (name, _, values) in enumerate(series):
        value = float(values[-1][1])
        color = "#ccccdc"
        for step in steps:
            if step["value"] is None or value >= step["value"]:
                color = COLORS.get(step["color"], step["color"])
        x = (i + 0.5) / len(series)
        ax.text(x, 0.5, f"{value:,.0f}", transform=ax.transAxes, ha="center", fontsize=22, color=color)
        ax.text(x, 0.2, name, transform=ax.transAxes, ha="center", fontsize=8, color="#9fa7b3")


def draw_table(ax: Any, series: list[Any]) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    rows = [{k: v for k, v in labels.items() if k not in ("__name__", "job")} for _, labels, _ in series]
    if not rows:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", color="#9fa7b3")
        return
    y = 0.9
    for r in rows[:8]:
        ax.text(0.02, y, "   ".join(f"{k}: {v}" for k, v in sorted(r.items())), transform=ax.transAxes,
                fontsize=7, color="#ccccdc", family="monospace")  # fmt: skip
        y -= 0.11


def _runs(times: list[float]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for t in times:
        if out and t - out[-1][1] <= STEP_S * 1.5:
            out[-1] = (out[-1][0], t)
        else:
            out.append((t, t))
    return out


def _finite(v: str, log: bool) -> bool:
    try:
        x = float(v)
    except ValueError:
        return False
    return x == x and abs(x) != float("inf") and (x > 0 or not log)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--rate", type=int, default=400, help="records per second")
    ap.add_argument("--model", default="", help="a model directory (default: train a small one)")
    ap.add_argument("--out", default=str(REPO / "docs" / "dashboard.png"))
    args = ap.parse_args()
    result = run(args)
    draw(result, Path(args.out))
    empty = [p["panel"]["title"] for p in result["panels"] if p["panel"]["type"] != "row" and not p["series"]]
    print(f"wrote {args.out}; panels without data: {empty or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

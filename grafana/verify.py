#!/usr/bin/env python3
"""Checks the dashboards and alerts against a live proxy and a real Prometheus.

Runs simulated pools (`miner-sim pool`), two proxy instances (`hashsplit
run`, a farm of two on the same pools) and simulated miners (`miner-sim
miners`, a group per instance hashing at different rates) on 127.0.0.1,
then:

1. `promtool check rules`, `promtool test rules` and `promtool check config`
   on grafana/alerts.yml, alerts.test.yml and prometheus.yml;
2. `promtool check metrics` on each instance's live /metrics;
3. starts Prometheus on loopback, scraping both instances every second and
   loading grafana/alerts.yml, and through its HTTP API checks that
   - every panel query of every dashboard returns at least one series, with
     the dashboard variables substituted as "All" would ($pool -> .+) and
     the interval variables as short windows;
   - every series selector inside those queries returns at least one series;
   - every variable's label_values() finds values;
   - every alert rule loaded, evaluates without error, and every series
     selector in it returns at least one series (the alert conditions
     themselves are false in a healthy run, so a whole alert expression may
     return nothing; that it fires when it should is alerts.test.yml's job);
   - every alert has cases in alerts.test.yml;
   - the farm really ran: hashrate > 0, every pool up, shares accepted;
   - the dashboards add the instances up: with both scraped, no panel query
     returns per-instance series unless its legend names {{instance}}; the
     connected miners are the sum of both instances' own counts; and each
     pool's target and policy share are the instances' figures weighted by
     their hashrates (a ratio of sums, not an average of ratios).

The instances fetch their pools' network shares from a JSON source served
here on loopback (`[network]`), so the network-share series exist too.

Python 3 standard library only. Every wait is bounded; every process started
is stopped on exit. Environment:
  HASHSPLIT_BIN, MINER_SIM_BIN  binaries to use (default: cargo build them)
  VERIFY_DIFFICULTY             pool and miner difficulty (default 0.001)
  VERIFY_KEEP=1                 keep the temporary directory (logs, TSDB)
"""

import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"
POOLS = ["alpha", "beta"]
# Two instances with different hashrates, so a panel that averaged their
# ratios would differ from the farm's ratio of sums.
INSTANCES = {"a": "2MH/s", "b": "1MH/s"}
MINERS = 3
# Fewer than each instance's miners, so the overflow series "_other" is
# exercised too.
MAX_WORKERS = 2
DIFFICULTY = os.environ.get("VERIFY_DIFFICULTY", "0.001")
# Prometheus scrapes and evaluates every second; the windows below hold
# plenty of samples after the warm-up.
SUBSTITUTIONS = [
    ("$__rate_interval", "15s"),
    ("$__interval", "5s"),
    ("$__range_s", "60"),
    ("$__range", "1m"),
]
WARM_UP_SAMPLES = 20
DEADLINE = time.monotonic() + 300


class Failed(Exception):
    pass


def log(message):
    print(f"verify: {message}", flush=True)


def remaining(limit):
    """Returns `limit` seconds, or less if the overall deadline is nearer."""
    left = DEADLINE - time.monotonic()
    if left <= 0:
        raise Failed("overall deadline passed")
    return min(limit, left)


def eventually(what, check, limit):
    """Polls `check` until it returns a true value; fails after `limit` s."""
    end = time.monotonic() + remaining(limit)
    last = None
    while time.monotonic() < end:
        try:
            result = check()
            if result:
                return result
        except (OSError, ValueError, KeyError) as e:
            last = e
        time.sleep(0.5)
    raise Failed(f"timed out waiting for {what}" + (f" (last error: {last})" if last else ""))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port):
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


class Processes:
    """Starts processes with their output in log files; stops them all."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.running = []

    def start(self, name, argv):
        out = open(self.workdir / f"{name}.log", "wb")
        log(f"starting {name}: {' '.join(str(a) for a in argv)}")
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.running.append((name, process, out))
        return process

    def check_alive(self):
        for name, process, _ in self.running:
            if process.poll() is not None:
                raise Failed(f"{name} exited with status {process.returncode}")

    def stop_all(self):
        for _, process, _ in reversed(self.running):
            if process.poll() is None:
                process.terminate()
        for name, process, out in reversed(self.running):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log(f"{name} did not stop; killing it")
                process.kill()
                process.wait(timeout=5)
            out.close()

    def dump_logs(self, lines=30):
        for name, _, out in self.running:
            out.flush()
            text = (self.workdir / f"{name}.log").read_text(errors="replace").splitlines()
            print(f"---- last {lines} lines of {name}.log", file=sys.stderr)
            for line in text[-lines:]:
                print(line, file=sys.stderr)


def run(argv, stdin=None):
    """Runs a command to completion; fails with its output if it fails."""
    log(" ".join(str(a) for a in argv))
    result = subprocess.run(argv, stdin=stdin, capture_output=True, text=True, timeout=remaining(120))
    if result.returncode != 0:
        raise Failed(f"{argv[0]} {argv[1]} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def binaries():
    hashsplit = os.environ.get("HASHSPLIT_BIN")
    miner_sim = os.environ.get("MINER_SIM_BIN")
    if not (hashsplit and miner_sim):
        run(["cargo", "build", "--locked", "--bin", "hashsplit", "--bin", "miner-sim"])
        target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
        hashsplit = hashsplit or target / "debug" / "hashsplit"
        miner_sim = miner_sim or target / "debug" / "miner-sim"
    return str(hashsplit), str(miner_sim)


def check_rule_files():
    run(["promtool", "check", "rules", GRAFANA / "alerts.yml"])
    # promtool resolves rule_files relative to the test file.
    run(["promtool", "test", "rules", GRAFANA / "alerts.test.yml"])
    run(["promtool", "check", "config", GRAFANA / "prometheus.yml"])


class NetworkSource:
    """Serves the pools' network shares as JSON on loopback, as a block
    explorer's "pools over the last week" answer does."""

    BODY = json.dumps({"pools": [{"name": "Alpha", "blockCount": 100},
                                 {"name": "beta", "blockCount": 50},
                                 {"name": "others", "blockCount": 850}]}).encode()

    def __init__(self):
        body = self.BODY

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/pools/1w"
        # A daemon thread: it ends with this script.
        threading.Thread(target=self.server.serve_forever, daemon=True).start()



def proxy_config(miner_port, metrics_port, pool_ports, network_url):
    pools = "".join(
        f'\n[[pool]]\nname = "{name}"\nurl = "stratum+tcp://127.0.0.1:{port}"\nuser = "verify"\n'
        for name, port in zip(POOLS, pool_ports)
    )
    return f"""[server]
listen = "127.0.0.1:{miner_port}"

[downstream]
min_difficulty = {DIFFICULTY}
initial_difficulty = {DIFFICULTY}

[metrics]
listen = "127.0.0.1:{metrics_port}"
per_worker = true
max_workers = {MAX_WORKERS}

[network]
source = "{network_url}"
refresh = "10s"

[policy]
max_share = 0.6
max_network_share = 0.25
{pools}"""


def samples(exposition):
    """Parses a text exposition into (name, {label: value}, value) rows."""
    rows = []
    pattern = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
    for line in exposition.splitlines():
        match = pattern.match(line)
        if match:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
            rows.append((match.group(1), labels, float(match.group(3))))
    return rows


def farm_is_busy(metrics_url):
    """True once every pool is up and has accepted shares, and a worker has
    a last-share time."""
    rows = samples(http_get(metrics_url))
    up = {labels["pool"] for name, labels, value in rows if name == "hashsplit_pool_up" and value == 1}
    accepted = {
        labels["pool"]
        for name, labels, value in rows
        if name == "hashsplit_shares_total" and labels.get("reason") == "pool-accepted" and value > 0
    }
    worker = any(name == "hashsplit_worker_last_share_timestamp_seconds" for name, _, _ in rows)
    return up == set(POOLS) and accepted == set(POOLS) and worker


class Prometheus:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"

    def api(self, path, **params):
        url = f"{self.base}/api/v1/{path}?{urllib.parse.urlencode(params, doseq=True)}"
        try:
            body = http_get(url, timeout=10)
        except urllib.error.HTTPError as e:
            body = e.read().decode()
        reply = json.loads(body)
        if reply.get("status") != "success":
            raise Failed(f"{path} {params}: {reply.get('errorType')}: {reply.get('error')}")
        return reply["data"]

    def query(self, expr):
        """Returns the number of series (or 1 for a scalar) `expr` yields."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return 1
        return len(data["result"])

    def vector(self, expr, at):
        """Returns `expr` at time `at` as [(labels, value)]."""
        data = self.api("query", query=expr, time=at)
        if data["resultType"] != "vector":
            raise Failed(f"{expr}: a {data['resultType']}, not a vector")
        return [(row["metric"], float(row["value"][1])) for row in data["result"]]


def prometheus_config(metrics_ports):
    return f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {GRAFANA / "alerts.yml"}
scrape_configs:
  - job_name: hashsplit
    static_configs:
      - targets: [{", ".join(f'"127.0.0.1:{port}"' for port in metrics_ports)}]
"""


SELECTOR = re.compile(r'(?<![\w:"])(hashsplit_\w+|up)\b(?!\s*\()(\{[^}]*\})?')


def selectors(expr):
    """Returns every series selector (metric name and matchers) in `expr`."""
    return sorted({name + (matchers or "") for name, matchers in SELECTOR.findall(expr)})


def substitute(expr, variables):
    for name, value in SUBSTITUTIONS:
        expr = expr.replace(name, value)
    for name in variables:
        for form in (f"${{{name}}}", f"[[{name}]]", f"${name}"):
            expr = expr.replace(form, ".+")
    return expr


def panels(dashboard):
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def check_dashboards(prom):
    checked = 0
    for path in sorted((GRAFANA / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        variables = [v["name"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
        for variable in dashboard["templating"]["list"]:
            if variable["type"] != "query":
                continue
            match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", variable["definition"])
            if not match:
                raise Failed(f"{path.name}: variable {variable['name']}: cannot check {variable['definition']!r}")
            values = prom.api(f"label/{match.group(2)}/values", **{"match[]": match.group(1)})
            if not values:
                raise Failed(f"{path.name}: variable {variable['name']} ({variable['definition']}) finds no values")
            checked += 1
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                expr = substitute(target["expr"], variables)
                where = f"{path.name}: panel {panel['title']!r} {target['refId']}"
                for selector in selectors(expr):
                    if prom.query(selector) == 0:
                        raise Failed(f"{where}: {selector} selects no series")
                if prom.query(expr) == 0:
                    raise Failed(f"{where}: returns no series: {expr}")
                checked += 1
    log(f"{checked} dashboard queries and variables return data")


def check_alerts(prom):
    tests = (GRAFANA / "alerts.test.yml").read_text()
    rules = [rule for group in prom.api("rules")["groups"] for rule in group["rules"]]
    alerts = [rule for rule in rules if rule["type"] == "alerting"]
    if not alerts:
        raise Failed("Prometheus loaded no alert rule")
    for rule in alerts:
        where = f"alert {rule['name']}"
        if rule["health"] != "ok":
            raise Failed(f"{where}: health {rule['health']}: {rule.get('lastError')}")
        prom.query(rule["query"])
        for selector in selectors(rule["query"]):
            if prom.query(selector) == 0:
                raise Failed(f"{where}: {selector} selects no series")
        cases = len(re.findall(rf"alertname:\s*{re.escape(rule['name'])}\s*$", tests, re.M))
        if cases < 2:
            raise Failed(f"{where}: alerts.test.yml has {cases} case(s), want firing and not firing")
    log(f"{len(alerts)} alerts load, evaluate and select existing series")
    pending = prom.api("query", query="ALERTS")["result"]
    for alert in pending:
        log(f"note: {alert['metric']['alertname']} is {alert['metric']['alertstate']} in the healthy run")


def panel_queries():
    """Yields (where, legend, expr) for every panel query, variables as All."""
    for path in sorted((GRAFANA / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        variables = [v["name"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                where = f"{path.name}: panel {panel['title']!r} {target['refId']}"
                yield where, target.get("legendFormat", ""), substitute(target["expr"], variables)


def check_farm_totals(prom, metrics_urls):
    """The dashboards show the farm: two instances added up, not one."""
    at = time.time()
    instances = prom.vector("hashsplit_build_info", at)
    if len(instances) != len(INSTANCES):
        raise Failed(f"Prometheus scrapes {len(instances)} instances, want {len(INSTANCES)}")
    checked = 0
    for where, legend, expr in panel_queries():
        if "{{instance}}" in legend or "build_info" in expr:
            continue
        for labels, _ in prom.vector(expr, at):
            if "instance" in labels:
                raise Failed(f"{where}: a series per instance, not the farm's: {labels} from {expr}")
        checked += 1
    log(f"{checked} panel queries add the {len(INSTANCES)} instances up")

    # Connected miners: the stat panel against each instance's own count.
    own = sum(value for url in metrics_urls for name, _, value in samples(http_get(url))
              if name == "hashsplit_downstream_connections")
    shown = sum(value for _, value in prom.vector('sum(hashsplit_downstream_connections{instance=~".+"})', at))
    if own != len(INSTANCES) * MINERS or shown != own:
        raise Failed(f"connected miners: the dashboard shows {shown}, the instances say {own}, "
                     f"{len(INSTANCES) * MINERS} were started")

    # Each pool's target and policy share: the panel's figures against the
    # instances' own, weighted by each instance's hashrate, computed here.
    rate = 'sum by (instance) (rate(hashsplit_credited_difficulty_total[15s]))'
    weights = {labels["instance"]: value for labels, value in prom.vector(rate, at)}
    total = sum(weights.values())
    if len(weights) != len(INSTANCES) or total <= 0:
        raise Failed(f"hashrate by instance: {weights}")
    for metric, ref in [("policy_target_ratio", "D"), ("policy_delivered_ratio", "B")]:
        farm = {}
        for labels, value in prom.vector(f"hashsplit_{metric}", at):
            farm[labels["pool"]] = farm.get(labels["pool"], 0.0) + value * weights[labels["instance"]] / total
        panel = next(expr for where, _, expr in panel_queries()
                     if where == f"overview.json: panel 'Share of hashrate vs cap: $pool' {ref}")
        shown = {labels["pool"]: value for labels, value in prom.vector(panel, at)}
        for pool, expected in farm.items():
            if abs(shown.get(pool, -1) - expected) > 1e-6:
                raise Failed(f"{metric}: the dashboard shows {shown} for the farm, "
                             f"the instances weighted by hashrate give {farm}")
    log(f"the farm's miners, targets and policy shares add up over {sorted(weights)}")


def check_farm_ran(prom):
    for what, expr in [
        ("hashrate", "sum(rate(hashsplit_credited_difficulty_total[15s])) > 0"),
        ("every pool up", "min(hashsplit_pool_up) == 1"),
        ("shares accepted by pools", 'sum(hashsplit_shares_total{reason="pool-accepted"}) > 0'),
        ("connected miners", "sum(hashsplit_downstream_connections) > 0"),
        ("per-worker series", "count(hashsplit_worker_credited_difficulty_total) > 0"),
        ("network shares fetched", 'min(hashsplit_network_share_ratio{pool="alpha"}) == 0.1'),
    ]:
        if prom.query(expr) == 0:
            raise Failed(f"the farm did not run as expected: no {what} ({expr})")


def verify(workdir, procs):
    check_rule_files()
    hashsplit, miner_sim = binaries()

    pool_ports = [free_port() for _ in POOLS]
    for name, port in zip(POOLS, pool_ports):
        procs.start(f"pool-{name}", [miner_sim, "pool", "--listen", f"127.0.0.1:{port}", "--difficulty", DIFFICULTY])
    for port in pool_ports:
        eventually(f"a pool on port {port}", lambda port=port: listening(port), 30)

    network = NetworkSource()
    metrics_ports, metrics_urls = [], []
    for name, hashrate in INSTANCES.items():
        miner_port, metrics_port = free_port(), free_port()
        config = workdir / f"hashsplit-{name}.toml"
        config.write_text(proxy_config(miner_port, metrics_port, pool_ports, network.url))
        procs.start(f"hashsplit-{name}", [hashsplit, "run", "--config", config])
        eventually(f"instance {name}'s listeners",
                   lambda: listening(miner_port) and listening(metrics_port), 30)
        procs.start(f"miners-{name}", [miner_sim, "miners", "--connect", f"127.0.0.1:{miner_port}",
                                       "--count", str(MINERS), "--hashrate", hashrate, "--profile", "asic",
                                       "--user", f"farm-{name}"])
        metrics_ports.append(metrics_port)
        metrics_urls.append(f"http://127.0.0.1:{metrics_port}/metrics")
    prom_port = free_port()
    for url in metrics_urls:
        eventually(f"shares accepted on every pool through {url}",
                   lambda url=url: procs.check_alive() or farm_is_busy(url), 90)

    for i, url in enumerate(metrics_urls):
        exposition = workdir / f"metrics-{i}.txt"
        exposition.write_text(http_get(url))
        with open(exposition) as stdin:
            run(["promtool", "check", "metrics"], stdin=stdin)
        log(f"promtool check metrics: {len(samples(exposition.read_text()))} samples pass")

    prom_config = workdir / "prometheus.yml"
    prom_config.write_text(prometheus_config(metrics_ports))
    procs.start("prometheus", ["prometheus", f"--config.file={prom_config}",
                               f"--storage.tsdb.path={workdir / 'tsdb'}",
                               f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"])
    prom = Prometheus(prom_port)

    def warmed_up():
        procs.check_alive()
        rows = prom.api("query", query="count_over_time(hashsplit_build_info[1m])")["result"]
        return len(rows) == len(INSTANCES) and all(float(r["value"][1]) >= WARM_UP_SAMPLES for r in rows)
    eventually(f"{WARM_UP_SAMPLES} scrapes", warmed_up, 60)
    eventually("every alert rule evaluated",
               lambda: all(r["lastEvaluation"] > "2000" for g in prom.api("rules")["groups"] for r in g["rules"]), 30)

    check_farm_ran(prom)
    check_dashboards(prom)
    check_farm_totals(prom, metrics_urls)
    check_alerts(prom)


def main():
    for tool in ("promtool", "prometheus"):
        if not shutil.which(tool):
            print(f"verify: {tool} not found (apt-get install prometheus)", file=sys.stderr)
            return 2
    # A TERM from CI unwinds through the finally below like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="hashsplit-verify-"))
    procs = Processes(workdir)
    try:
        verify(workdir, procs)
        log(f"OK in {time.monotonic() - started:.0f}s")
        return 0
    except (Failed, subprocess.TimeoutExpired) as e:
        print(f"verify: FAILED: {e}", file=sys.stderr)
        procs.dump_logs()
        return 1
    finally:
        procs.stop_all()
        if os.environ.get("VERIFY_KEEP") == "1":
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

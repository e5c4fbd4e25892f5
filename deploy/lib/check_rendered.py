#!/usr/bin/env python3
"""Checks on rendered chart output that neither Kubernetes schemas nor checkov make.

  check_rendered.py config FILE...   the router config in each ConfigMap uses only the keys of the
                                     router's config contract, every ${VAR} it references is set
                                     in the Deployment's environment, and the pod's
                                     terminationGracePeriodSeconds outlasts the router's shutdown
  check_rendered.py rules FILE OUT   writes the spec of the PrometheusRule in FILE to OUT, a
                                     plain rules file for `promtool check rules`
  check_rendered.py dashboard JSON OUT
                                     writes each panel query of the Grafana dashboard as a
                                     recording rule to OUT (Grafana's variables replaced), so that
                                     `promtool check rules` parses every query
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import yaml

# After router.shutdown_grace_seconds the router takes at most this long to give back what it holds
# and flush its sinks (SHUTDOWN_TAIL in src/service.rs), and the kubelet needs a moment besides.
SHUTDOWN_TAIL_SECONDS = 5
KILL_MARGIN_SECONDS = 5

# The router's config file, as the chart renders it. The router rejects unknown keys, so a key
# the chart writes must be one of these. "required" keys must be present.
SOURCE_KEYS = {
    "aws_sqs": ({"type", "queue_url", "region", "pollers"}, {"queue_url"}),
    "azure_service_bus": ({"type", "namespace", "queue", "auth", "connection_string"}, {"namespace", "queue", "auth"}),
    "gcp_pubsub": ({"type", "subscription"}, {"subscription"}),
    "http_ingest": ({"type", "token"}, {"token"}),
    "azure_event_grid_webhook": ({"type", "secret"}, {"secret"}),
}
SINK_KEYS = {
    "stdout": ({"type"}, set()),
    "webhook": ({"type", "url", "required", "secret_env"}, {"url"}),
}
SECTIONS = {
    "router": {"concurrency", "dedupe_window_seconds", "message_timeout_seconds", "shutdown_grace_seconds"},
    "cluster": {"mode", "force_after_deadline", "leader_election", "make_before_break", "shelter", "failback", "karpenter", "asg_lifecycle", "pool_stats"},
    "server": {"listen"},
    "log": {"format"},
}


def _docs(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [d for d in yaml.safe_load_all(fh) if isinstance(d, dict)]


def _check_keys(where: str, obj: dict[str, Any], allowed: set[str], required: set[str]) -> list[str]:
    errors = [f"{where}: unknown key {k!r}" for k in sorted(set(obj) - allowed)]
    errors += [f"{where}: missing key {k!r}" for k in sorted(required - set(obj)) ]
    return errors


def check_config(path: str) -> list[str]:
    docs = _docs(path)
    configs = [d for d in docs if d.get("kind") == "ConfigMap" and "config.yaml" in (d.get("data") or {})]
    deployments = [d for d in docs if d.get("kind") == "Deployment"]
    if len(configs) != 1 or len(deployments) != 1:
        return [f"{path}: expected one router ConfigMap and one Deployment, found {len(configs)} and {len(deployments)}"]
    config = yaml.safe_load(configs[0]["data"]["config.yaml"])
    errors = _check_keys("config", config, {"sources", "router", "cluster", "sinks", "server", "log"},
                         {"sources", "router", "cluster", "sinks", "server", "log"})
    for i, source in enumerate(config.get("sources") or []):
        kind = source.get("type")
        if kind not in SOURCE_KEYS:
            errors.append(f"sources[{i}]: unknown type {kind!r}")
            continue
        errors += _check_keys(f"sources[{i}] ({kind})", source, *SOURCE_KEYS[kind])
    if not config.get("sources"):
        errors.append("sources: empty")
    for i, sink in enumerate(config.get("sinks") or []):
        kind = sink.get("type")
        if kind not in SINK_KEYS:
            errors.append(f"sinks[{i}]: unknown type {kind!r}")
            continue
        errors += _check_keys(f"sinks[{i}] ({kind})", sink, *SINK_KEYS[kind])
    for section, keys in SECTIONS.items():
        errors += _check_keys(section, config.get(section) or {}, keys, set())
    election = (config.get("cluster") or {}).get("leader_election") or {}
    errors += _check_keys("cluster.leader_election", election, {"enabled", "lease_name"}, {"enabled"})
    if (config.get("cluster") or {}).get("mode") not in ("kubernetes", "dry_run"):
        errors.append("cluster.mode: not kubernetes or dry_run")
    if (config.get("log") or {}).get("format") not in ("json", "pretty", "auto"):
        errors.append("log.format: not json, pretty or auto")
    if (config.get("server") or {}).get("listen") != "0.0.0.0:8080":
        errors.append("server.listen: the probes and the Service expect 0.0.0.0:8080")

    pod = deployments[0]["spec"]["template"]["spec"]
    grace = (config.get("router") or {}).get("shutdown_grace_seconds", 20)
    termination = pod.get("terminationGracePeriodSeconds", 30)
    if termination < grace + SHUTDOWN_TAIL_SECONDS + KILL_MARGIN_SECONDS:
        errors.append(
            f"terminationGracePeriodSeconds {termination} < router.shutdown_grace_seconds {grace}"
            f" + {SHUTDOWN_TAIL_SECONDS} s shutdown tail + {KILL_MARGIN_SECONDS} s margin:"
            " the kubelet would kill the router before it has stopped")
    container = pod["containers"][0]
    env = {e["name"] for e in container.get("env") or []}
    referenced = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", configs[0]["data"]["config.yaml"]))
    referenced |= {s["secret_env"] for s in config.get("sinks") or [] if s.get("secret_env")}
    referenced |= {"POD_NAMESPACE"} if election.get("enabled") else set()
    errors += [f"config references ${{{name}}} but the Deployment does not set it" for name in sorted(referenced - env)]
    return [f"{path}: {e}" for e in errors]


def extract_rules(path: str, out: str) -> None:
    rules = [d for d in _docs(path) if d.get("kind") == "PrometheusRule"]
    if len(rules) != 1:
        raise SystemExit(f"{path}: expected one PrometheusRule, found {len(rules)}")
    with open(out, "w", encoding="utf-8") as fh:
        yaml.safe_dump(rules[0]["spec"], fh, sort_keys=False)


def dashboard_rules(path: str, out: str) -> None:
    with open(path, encoding="utf-8") as fh:
        dashboard = json.load(fh)
    variables = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "6h", "$namespace": ".*", "$pool": "(other)"}
    rules = []
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, value in variables.items():
                expr = expr.replace(name, value)
            leftover = re.findall(r"\$\w+", expr)
            if leftover:
                raise SystemExit(f"{path}: panel {panel['title']!r} uses unknown variables {leftover}")
            rules.append({"record": f"dashboard:panel_{panel['id']}_{target['refId']}", "expr": expr})
    if not rules:
        raise SystemExit(f"{path}: no panel queries found")
    with open(out, "w", encoding="utf-8") as fh:
        yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}, fh, sort_keys=False)


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "config":
        errors = [e for path in argv[1:] for e in check_config(path)]
        for error in errors:
            print(error, file=sys.stderr)
        return 1 if errors else 0
    if len(argv) == 3 and argv[0] == "rules":
        extract_rules(argv[1], argv[2])
        return 0
    if len(argv) == 3 and argv[0] == "dashboard":
        dashboard_rules(argv[1], argv[2])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

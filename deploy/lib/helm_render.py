#!/usr/bin/env python3
"""Render a Helm chart offline with the Helm library that helm-sdkpy ships.

helm-sdkpy exposes Helm's install action but no `helm template`. This script
runs that install action against a stub Kubernetes API on the loopback
interface: the stub answers the discovery calls Helm makes, reports that no
object exists yet, and accepts every create or update (the chart's objects and
Helm's release record alike) without storing it. Nothing leaves the machine
and nothing is kept. The rendered manifest that Helm records in the release
(the same documents, in the same order, that `helm template` prints) goes to
stdout or to --output. HELM_RENDER_DEBUG=1 logs the stub's requests.

The values files are merged left to right as `helm -f a.yaml -f b.yaml` does
(maps merge key by key, anything else is replaced); Helm then coalesces them
with the chart's values.yaml and checks the result against
values.schema.json, so a typo in a value fails the render.

Usage:
  helm_render.py --chart DIR [--release NAME] [--namespace NS]
                 [-f values.yaml ...] [--output FILE] [--lint]

With --lint, `helm lint` also runs on the chart with the same values.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml

# The Kubernetes version the stub reports; it becomes .Capabilities.KubeVersion.
KUBE_VERSION = {"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64"}

# (group, version) -> [(resource, kind, namespaced)]. Everything the chart can
# render must be listed here, or Helm fails to map the kind to a resource.
RESOURCES: dict[tuple[str, str], list[tuple[str, str, bool]]] = {
    ("", "v1"): [
        ("configmaps", "ConfigMap", True),
        ("namespaces", "Namespace", False),
        ("secrets", "Secret", True),
        ("serviceaccounts", "ServiceAccount", True),
        ("services", "Service", True),
        ("pods", "Pod", True),
        ("resourcequotas", "ResourceQuota", True),
        ("limitranges", "LimitRange", True),
    ],
    ("apps", "v1"): [("deployments", "Deployment", True)],
    ("policy", "v1"): [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    ("networking.k8s.io", "v1"): [("networkpolicies", "NetworkPolicy", True)],
    ("rbac.authorization.k8s.io", "v1"): [
        ("clusterroles", "ClusterRole", False),
        ("clusterrolebindings", "ClusterRoleBinding", False),
        ("roles", "Role", True),
        ("rolebindings", "RoleBinding", True),
    ],
    ("coordination.k8s.io", "v1"): [("leases", "Lease", True)],
    ("scheduling.k8s.io", "v1"): [("priorityclasses", "PriorityClass", False)],
    ("events.k8s.io", "v1"): [("events", "Event", True)],
    ("monitoring.coreos.com", "v1"): [
        ("servicemonitors", "ServiceMonitor", True),
        ("prometheusrules", "PrometheusRule", True),
        ("podmonitors", "PodMonitor", True),
    ],
}


def _resource_list(group: str, version: str) -> dict[str, Any]:
    gv = f"{group}/{version}" if group else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": [
            {
                "name": name,
                "singularName": kind.lower(),
                "namespaced": namespaced,
                "kind": kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            }
            for name, kind, namespaced in RESOURCES[(group, version)]
        ],
    }


def _group_list() -> dict[str, Any]:
    groups: dict[str, list[str]] = {}
    for group, version in RESOURCES:
        if group:
            groups.setdefault(group, []).append(version)
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": group,
                "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
                "preferredVersion": {"groupVersion": f"{group}/{versions[0]}", "version": versions[0]},
            }
            for group, versions in groups.items()
        ],
    }


class _StubAPI(BaseHTTPRequestHandler):
    """Just enough of the Kubernetes API for an install that keeps nothing."""

    def log_message(self, fmt: str, *args: Any) -> None:
        if os.environ.get("HELM_RENDER_DEBUG"):
            sys.stderr.write("stub: " + (fmt % args) + " " + str(self.headers.get("Content-Type")) + "\n")

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _not_found(self) -> None:
        self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                         "reason": "NotFound", "code": 404, "message": "not found"})

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/version":
            return self._send(200, KUBE_VERSION)
        if path == "/api":
            return self._send(200, {"kind": "APIVersions", "versions": ["v1"]})
        if path == "/api/v1":
            return self._send(200, _resource_list("", "v1"))
        if path == "/apis":
            return self._send(200, _group_list())
        m = re.fullmatch(r"/apis/([^/]+)/([^/]+)", path)
        if m and (m.group(1), m.group(2)) in RESOURCES:
            return self._send(200, _resource_list(m.group(1), m.group(2)))
        # Any single object or list: nothing exists yet.
        return self._not_found()

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if "json" in (self.headers.get("Content-Type") or ""):
            body = json.loads(raw or b"{}")
        else:
            # client-go sends core objects (here: Helm's release record) as
            # protobuf; the reply only needs to decode, so answer in JSON.
            body = self._object_for_path()
        meta = body.setdefault("metadata", {})
        meta.setdefault("uid", "00000000-0000-0000-0000-000000000000")
        meta.setdefault("resourceVersion", "1")
        self._send(201, body)

    def _object_for_path(self) -> dict[str, Any]:
        path = self.path.split("?", 1)[0].strip("/").split("/")
        # api/v1/[namespaces/NS/]RESOURCE[/NAME] or apis/GROUP/VERSION/...
        group, version, rest = ("", path[1], path[2:]) if path[0] == "api" else (path[1], path[2], path[3:])
        if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) > 2:
            rest = rest[2:]
        kind = next((k for r, k, _ in RESOURCES.get((group, version), []) if r == rest[0]), "Unknown")
        obj: dict[str, Any] = {"kind": kind, "apiVersion": f"{group}/{version}" if group else version, "metadata": {}}
        if len(rest) > 1:
            obj["metadata"]["name"] = rest[1]
        return obj

    do_PUT = do_POST  # noqa: N815
    do_PATCH = do_POST  # noqa: N815

    def do_DELETE(self) -> None:  # noqa: N802
        self._not_found()


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _load_values(files: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for path in files:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh) or {}
        if not isinstance(doc, dict):
            raise SystemExit(f"{path}: a values file must hold a map")
        values = _merge(values, doc)
    return values


def _lint(helm_sdkpy: Any, config: Any, chart: str, values: dict[str, Any], scratch: str) -> list[str]:
    """helm lint, with the given values.

    helm-sdkpy's lint takes no values, so it lints a copy of the chart whose values.yaml is the
    chart's own merged with the given ones. Its messages carry the file and severity but not the
    text (the error does not survive the library's JSON); the render before it reports the text
    of anything that also breaks rendering.
    """
    copy = os.path.join(scratch, "lint", os.path.basename(chart))
    shutil.copytree(chart, copy)
    with open(os.path.join(copy, "values.yaml"), encoding="utf-8") as fh:
        defaults = yaml.safe_load(fh) or {}
    with open(os.path.join(copy, "values.yaml"), "w", encoding="utf-8") as fh:
        yaml.safe_dump(_merge(defaults, values), fh, sort_keys=False)
    report = asyncio.run(helm_sdkpy.Lint(config).run(copy))
    severity = {1: "info", 2: "warning", 3: "error"}
    messages = report.get("Messages") or []
    # Info messages (such as "icon is recommended") are not problems.
    problems = [
        f"{severity.get(m.get('Severity'), m.get('Severity'))} in {m.get('Path')}"
        for m in messages
        if (m.get("Severity") or 0) >= 2
    ]
    if report.get("Errors") and not problems:
        problems.append(f"{len(report['Errors'])} error(s)")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chart", required=True)
    parser.add_argument("--release", default="eviction-router")
    parser.add_argument("--namespace", default="eviction-router")
    parser.add_argument("-f", "--values", action="append", default=[])
    parser.add_argument("--output", "-o", help="file to write (default, or -: stdout)")
    parser.add_argument("--lint", action="store_true", help="also run helm lint with the same values")
    args = parser.parse_args()

    # helm-sdkpy's library creates Helm's cache, config and data directories under $HOME
    # (it ignores HELM_*_HOME and XDG_*): give it a scratch home, removed at the end.
    scratch = tempfile.mkdtemp(prefix="helm-render-")
    os.environ["HOME"] = os.path.join(scratch, "home")
    os.makedirs(os.environ["HOME"])

    import helm_sdkpy  # after the environment is set: the library reads it when it loads

    server = ThreadingHTTPServer(("127.0.0.1", 0), _StubAPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = yaml.safe_dump({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "stub", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "users": [{"name": "stub", "user": {}}],
        "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub", "namespace": args.namespace}}],
        "current-context": "stub",
    })

    chart = os.path.abspath(args.chart)
    values = _load_values(args.values)
    try:
        config = helm_sdkpy.Configuration(namespace=args.namespace, kubeconfig=kubeconfig)
        release = asyncio.run(helm_sdkpy.Install(config).run(
            args.release, chart, values=values or None, wait=False, timeout=60,
        ))
        if args.lint:
            problems = _lint(helm_sdkpy, config, chart, values, scratch)
            if problems:
                print(f"helm lint {args.chart} (with these values) found: {problems}", file=sys.stderr)
                return 1
    except helm_sdkpy.HelmError as err:
        print(f"render {args.chart}: {err}", file=sys.stderr)
        return 1
    finally:
        server.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)

    manifest = release.get("manifest")
    if not isinstance(manifest, str):
        print(f"render {args.chart}: no manifest in the release: {sorted(release)}", file=sys.stderr)
        return 1
    manifest = manifest.strip("\n") + "\n"
    if args.output and args.output != "-":
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(manifest)
    else:
        sys.stdout.write(manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())

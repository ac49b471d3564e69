# Copyright: (c) 2026, aiswarm.swarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters generating Prometheus' scrape configuration from the inventory.

Prometheus keys used here are those of its configuration reference (prometheus.io/docs/prometheus/
latest/configuration/configuration/, 2.42 as Debian 12 ships it): ``scrape_configs[]`` with
``job_name``, ``metrics_path``, ``scheme``, ``static_configs[].targets/labels``,
``authorization.credentials_file``, ``params``, ``relabel_configs[]`` (``source_labels``,
``target_label``, ``replacement``); the blackbox exporter's multi-target pattern (``/probe`` with
``module`` and ``target`` parameters, github.com/prometheus/blackbox_exporter README).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.aiswarm.swarm.plugins.filter.gateway import _address

_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_JOB_KEYS = {"name", "group", "port", "port_var", "metrics_path", "credentials", "health_path", "scheme"}


def _check_job(index: int, job: Any, credentials: Mapping[str, Any]) -> dict[str, Any]:
    where = f"prometheus_scrape_jobs[{index}]"
    if not isinstance(job, Mapping):
        raise AnsibleFilterError(f"{where}: expected a dict with name, group and port, got {job!r}")
    unknown = sorted(set(job) - _JOB_KEYS)
    if unknown:
        raise AnsibleFilterError(f"{where}: unknown keys {unknown}; allowed: {sorted(_JOB_KEYS)}")
    name = job.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise AnsibleFilterError(f"{where}.name: expected a job name of letters, digits and _, got {name!r}")
    if not isinstance(job.get("group"), str) or not job["group"]:
        raise AnsibleFilterError(
            f"{where}.group ({name}): expected an inventory group name, got {job.get('group')!r}"
        )
    port = job.get("port")
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise AnsibleFilterError(f"{where}.port ({name}): expected a port number 1-65535, got {port!r}")
    job = {**job, "port": port}
    for key in ("metrics_path", "health_path"):
        if key in job and (not isinstance(job[key], str) or not job[key].startswith("/")):
            raise AnsibleFilterError(
                f"{where}.{key} ({name}): expected a path starting with /, got {job[key]!r}"
            )
    if job.get("scheme", "http") not in ("http", "https"):
        raise AnsibleFilterError(f"{where}.scheme ({name}): expected http or https, got {job['scheme']!r}")
    if "credentials" in job and job["credentials"] not in credentials:
        raise AnsibleFilterError(
            f"{where}.credentials ({name}): {job['credentials']!r} is not a key of "
            f"prometheus_scrape_credentials (known: {sorted(credentials)})"
        )
    return dict(job)


def _port(job: Mapping[str, Any], hostvars: Mapping[str, Any], host: str) -> int:
    port = hostvars.get(job["port_var"], job["port"]) if job.get("port_var") else job["port"]
    try:
        port = int(port)
    except (TypeError, ValueError):
        port = 0
    if not 0 < port < 65536:
        raise AnsibleFilterError(
            f"{job.get('port_var')} of host {host}: expected a port number 1-65535 "
            f"for the {job['name']} scrape job"
        )
    return port


def scrape_targets(groups: Any, hostvars: Any, jobs: Any, credentials: Any = None) -> list[dict[str, Any]]:
    """Every scrape target of ``jobs`` in the inventory, one dict per (job, host).

    ``jobs`` is the role's ``prometheus_scrape_jobs``: ``[{name, group, port[, port_var]
    [, metrics_path][, credentials][, health_path][, scheme]}]``. A host's own ``port_var``
    (for example ``vllm_port``) wins over the job's port. Jobs whose group is missing or empty are
    left out. Returns ``[{job, host, address, port, endpoint, metrics_path, scheme, credentials,
    health_url}]``
    (``credentials`` the name of a credentials file or None, ``health_url`` None without a health path).
    """
    credentials = credentials or {}
    if not isinstance(credentials, Mapping):
        raise AnsibleFilterError("prometheus_scrape_credentials: expected a dict of name -> secret")
    if not isinstance(jobs, list):
        raise AnsibleFilterError(
            f"prometheus_scrape_jobs: expected a list of jobs, got {type(jobs).__name__}"
        )
    checked = [_check_job(i, job, credentials) for i, job in enumerate(jobs)]
    names = [job["name"] for job in checked]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise AnsibleFilterError(f"prometheus_scrape_jobs: job names must be unique, repeated: {duplicates}")
    targets = []
    for job in checked:
        for host in sorted(groups.get(job["group"]) or []):
            hv = hostvars[host]
            address = _address(host, hv)
            port = _port(job, hv, host)
            scheme = job.get("scheme", "http")
            health = job.get("health_path")
            targets.append(
                {
                    "job": job["name"],
                    "host": host,
                    "address": address,
                    "port": port,
                    "endpoint": f"{address}:{port}",
                    "metrics_path": job.get("metrics_path", "/metrics"),
                    "scheme": scheme,
                    "credentials": job.get("credentials"),
                    "health_url": f"{scheme}://{address}:{port}{health}" if health else None,
                }
            )
    return targets


def prometheus_scrape_configs(
    targets: Any, credentials_dir: str, blackbox_address: str | None = None, blackbox_module: str = "http_2xx"
) -> list[dict[str, Any]]:
    """Prometheus ``scrape_configs`` for the output of ``scrape_targets``.

    One job per scrape job, one static config per host labelled ``host`` (the inventory name)
    and ``instance`` (``<host>:<port>``); a job with credentials reads its bearer token from
    ``<credentials_dir>/<name>``. With ``blackbox_address`` (``host:port`` of a blackbox
    exporter) a ``blackbox`` job probes every target's health URL, labelled ``service`` (the job),
    ``host`` and ``instance`` (the URL).
    """
    if not isinstance(targets, list):
        raise AnsibleFilterError("prometheus_scrape_configs: expected the list scrape_targets returns")
    jobs: dict[str, dict[str, Any]] = {}
    for target in targets:
        job = jobs.setdefault(
            target["job"],
            {"job_name": target["job"], "metrics_path": target["metrics_path"], "scheme": target["scheme"]},
        )
        if target["credentials"]:
            job["authorization"] = {"credentials_file": f"{credentials_dir}/{target['credentials']}"}
        job.setdefault("static_configs", []).append(
            {
                "targets": [target["endpoint"]],
                "labels": {"host": target["host"], "instance": f"{target['host']}:{target['port']}"},
            }
        )
    configs = list(jobs.values())
    probes = [t for t in targets if t["health_url"]]
    if blackbox_address and probes:
        configs.append(
            {
                "job_name": "blackbox",
                "metrics_path": "/probe",
                "params": {"module": [blackbox_module]},
                "static_configs": [
                    {"targets": [t["health_url"]], "labels": {"service": t["job"], "host": t["host"]}}
                    for t in probes
                ],
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {"target_label": "__address__", "replacement": blackbox_address},
                ],
            }
        )
    return configs


_RECEIVER_TYPES = {
    "webhook": {"required": {"url"}, "optional": {"send_resolved", "bearer_token", "max_alerts"}},
    "email": {
        "required": {"to"},
        "optional": {"send_resolved", "from", "smarthost", "auth_username", "auth_password", "require_tls"},
    },
}
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


def _check_receiver(index: int, receiver: Any, smtp: Mapping[str, Any]) -> dict[str, Any]:
    where = f"alertmanager_receivers[{index}]"
    if not isinstance(receiver, Mapping):
        raise AnsibleFilterError(
            f"{where}: expected a dict with name and type, got {type(receiver).__name__}"
        )
    name = receiver.get("name")
    if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9_.-]+$", name or ""):
        raise AnsibleFilterError(
            f"{where}.name: expected a name of letters, digits, '.', '_' or '-', got {name!r}"
        )
    kind = receiver.get("type")
    if kind not in _RECEIVER_TYPES:
        raise AnsibleFilterError(
            f"{where}.type ({name}): unknown receiver type {kind!r}; "
            f"expected one of {sorted(_RECEIVER_TYPES)}"
        )
    allowed = {"name", "type"} | _RECEIVER_TYPES[kind]["required"] | _RECEIVER_TYPES[kind]["optional"]
    unknown = sorted(set(receiver) - allowed)
    if unknown:
        raise AnsibleFilterError(
            f"{where} ({name}): unknown keys {unknown} for a {kind} receiver; allowed: {sorted(allowed)}"
        )
    missing = sorted(k for k in _RECEIVER_TYPES[kind]["required"] if not receiver.get(k))
    if missing:
        raise AnsibleFilterError(f"{where} ({name}): a {kind} receiver needs {missing}")
    if "send_resolved" in receiver and not isinstance(receiver["send_resolved"], bool):
        raise AnsibleFilterError(f"{where}.send_resolved ({name}): expected true or false")
    if kind == "webhook":
        url = receiver["url"]
        if not isinstance(url, str) or not re.match(r"^https?://[^\s/]+", url):
            raise AnsibleFilterError(
                f"{where}.url ({name}): expected an http:// or https:// URL, got {url!r}"
            )
        config: dict[str, Any] = {"url": url, "send_resolved": receiver.get("send_resolved", True)}
        if receiver.get("bearer_token"):
            config["http_config"] = {"authorization": {"credentials": str(receiver["bearer_token"])}}
        if "max_alerts" in receiver:
            if isinstance(receiver["max_alerts"], bool) or not isinstance(receiver["max_alerts"], int):
                raise AnsibleFilterError(f"{where}.max_alerts ({name}): expected a whole number")
            config["max_alerts"] = receiver["max_alerts"]
        return {"name": name, "webhook_configs": [config]}
    to = receiver["to"]
    if not isinstance(to, str) or "@" not in to:
        raise AnsibleFilterError(f"{where}.to ({name}): expected an e-mail address, got {to!r}")
    config = {"to": to, "send_resolved": receiver.get("send_resolved", True)}
    for key in ("from", "smarthost", "auth_username", "auth_password", "require_tls"):
        if key in receiver:
            config[key] = receiver[key]
    for key in ("from", "smarthost"):
        if key not in config and not smtp.get(key):
            raise AnsibleFilterError(
                f"{where} ({name}): an email receiver needs '{key}', in the receiver or in alertmanager_smtp"
            )
    return {"name": name, "email_configs": [config]}


def alertmanager_config(receivers: Any, settings: Any) -> dict[str, Any]:
    """Alertmanager's configuration from the inventory's receivers, checked.

    ``receivers``: ``[{name, type: webhook, url[, send_resolved][, bearer_token][, max_alerts]}
    | {name, type: email, to[, from][, smarthost][, auth_username][, auth_password][, require_tls]
    [, send_resolved]}]``. ``settings``: ``{group_by, group_wait, group_interval, repeat_interval,
    default_receiver, routes, inhibit_rules, smtp}``. Every notification goes to every receiver
    unless ``routes`` (``[{receiver, matchers, continue}]``) say otherwise; with no receiver the
    alerts go to a receiver named ``none`` that notifies nobody (Prometheus' UI still shows them).
    """
    if not isinstance(receivers, list):
        raise AnsibleFilterError(f"alertmanager_receivers: expected a list, got {type(receivers).__name__}")
    if not isinstance(settings, Mapping):
        raise AnsibleFilterError("alertmanager_config: settings must be a dict")
    smtp = settings.get("smtp") or {}
    if not isinstance(smtp, Mapping):
        raise AnsibleFilterError("alertmanager_smtp: expected a dict of smarthost, from, auth_username, ...")
    checked = [_check_receiver(i, r, smtp) for i, r in enumerate(receivers)]
    names = [r["name"] for r in checked]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise AnsibleFilterError(
            f"alertmanager_receivers: receiver names must be unique, repeated: {repeated}"
        )
    for key in ("group_wait", "group_interval", "repeat_interval"):
        value = settings.get(key)
        if not isinstance(value, str) or not _DURATION.match(value):
            raise AnsibleFilterError(
                f"alertmanager_{key}: expected a duration such as 30s or 5m, got {value!r}"
            )
    group_by = settings.get("group_by")
    if not isinstance(group_by, list) or not all(isinstance(label, str) for label in group_by):
        raise AnsibleFilterError(f"alertmanager_group_by: expected a list of label names, got {group_by!r}")
    if not checked:
        checked = [{"name": "none"}]
        names = ["none"]
    default = settings.get("default_receiver") or None
    if default is not None and default not in names:
        raise AnsibleFilterError(
            f"alertmanager_default_receiver: {default!r} is not one of the receivers {names}"
        )
    routes = settings.get("routes") or []
    if not isinstance(routes, list):
        raise AnsibleFilterError("alertmanager_routes: expected a list of {receiver, matchers[, continue]}")
    child_routes = []
    for index, route in enumerate(routes):
        if not isinstance(route, Mapping) or route.get("receiver") not in names:
            raise AnsibleFilterError(
                f"alertmanager_routes[{index}].receiver: expected one of the receivers {names}"
            )
        matchers = route.get("matchers")
        if not isinstance(matchers, list) or not matchers or not all(isinstance(m, str) for m in matchers):
            raise AnsibleFilterError(
                f"alertmanager_routes[{index}].matchers: expected a list of matchers "
                "such as 'severity=\"page\"'"
            )
        child_routes.append(
            {
                "receiver": route["receiver"],
                "matchers": list(matchers),
                "continue": bool(route.get("continue", False)),
            }
        )
    if default is None and len(names) > 1 and not child_routes:
        # Every receiver gets every alert: one child route per receiver, each continuing.
        child_routes = [{"receiver": n, "matchers": ['alertname=~".+"'], "continue": True} for n in names]
        default = "none"
        checked.append({"name": default})
    route: dict[str, Any] = {
        "receiver": default or names[0],
        "group_by": list(group_by),
        "group_wait": settings["group_wait"],
        "group_interval": settings["group_interval"],
        "repeat_interval": settings["repeat_interval"],
    }
    if child_routes:
        route["routes"] = child_routes
    config: dict[str, Any] = {"route": route, "receivers": checked}
    global_smtp = {f"smtp_{k}": v for k, v in smtp.items() if v not in (None, "")}
    if global_smtp:
        config["global"] = global_smtp
    inhibit = settings.get("inhibit_rules") or []
    if not isinstance(inhibit, list):
        raise AnsibleFilterError("alertmanager_inhibit_rules: expected a list of Alertmanager inhibit rules")
    if inhibit:
        config["inhibit_rules"] = list(inhibit)
    return config


_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def prometheus_duration_seconds(value: Any) -> float:
    """Seconds in a Prometheus duration such as ``15s``, ``1h30m`` or ``500ms``."""
    if not isinstance(value, str) or not _DURATION.match(value):
        raise AnsibleFilterError(f"expected a Prometheus duration such as 15s, 5m or 1h30m, got {value!r}")
    parts = re.findall(r"([0-9]+)(ms|s|m|h|d|w|y)", value)
    return float(sum(int(number) * _UNIT_SECONDS[unit] for number, unit in parts))


class FilterModule:
    """Prometheus configuration from the inventory."""

    def filters(self) -> dict[str, Any]:
        return {
            "prometheus_scrape_targets": scrape_targets,
            "prometheus_scrape_configs": prometheus_scrape_configs,
            "alertmanager_config": alertmanager_config,
            "prometheus_duration_seconds": prometheus_duration_seconds,
        }

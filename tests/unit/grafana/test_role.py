"""The grafana role without a Grafana: its templates rendered with jinja2 from the role's defaults
and vars and a fake inventory, where the admin password may go, its pre-flight against bad input
(through the role's own entry point, tags grafana_preflight, on localhost: nothing is installed),
and the playbook's syntax. Grafana itself is not installable on the build machines."""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from jinja2.nativetypes import NativeEnvironment

from . import dashboards as dash

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "grafana"
PASSWORD = "Fake-admin-pass-4711"
BINDIR = Path(sys.executable).parent


def fake_inventory(**host: Any) -> dict[str, Any]:
    """Variables of gateway host oracle in an inventory with two gateway hosts, facts gathered."""
    hostvars = {
        "oracle": {"swarm_private_address": "10.20.0.10", **host},
        "oracle2": {"swarm_private_address": "10.20.0.11"},
    }
    return {
        "inventory_hostname": "oracle",
        "groups": {"all": ["oracle", "oracle2"], "gateway": ["oracle", "oracle2"]},
        "hostvars": hostvars,
        "ansible_facts": {"distribution": "Debian", "default_ipv4": {"address": "192.0.2.10"}},
        "ansible_managed": "Ansible managed: do not edit",
        "grafana_admin_password": PASSWORD,
        **hostvars["oracle"],
    }


def _undef(hint: str = "") -> None:
    raise jinja2.UndefinedError(hint)


def _filters() -> dict[str, Any]:
    from ansible.plugins.filter.core import FilterModule

    core = FilterModule().filters()
    return {"to_nice_yaml": core["to_nice_yaml"], "comment": core["comment"]}


def role_variables(inventory: dict[str, Any]) -> dict[str, Any]:
    """Defaults < inventory < role vars, as Ansible ranks them, every template resolved."""
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text(encoding="utf-8"))
    role_vars = yaml.safe_load((ROLE / "vars" / "main.yml").read_text(encoding="utf-8"))
    env = NativeEnvironment(undefined=jinja2.StrictUndefined)
    env.filters.update(_filters())
    env.globals["undef"] = _undef
    context = {**defaults, **inventory, **role_vars}

    def resolve(value: Any) -> Any:
        if isinstance(value, str) and "{{" in value:
            return env.from_string(value).render(context)
        if isinstance(value, dict):
            return {key: resolve(item) for key, item in value.items()}
        if isinstance(value, list):
            return [resolve(item) for item in value]
        return value

    for _round in range(10):
        resolved = {name: resolve(value) for name, value in context.items()}
        if resolved == context:
            return context
        context = resolved
    raise AssertionError("the role's variables do not resolve within 10 rounds")


def render(template: str, variables: dict[str, Any]) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(ROLE / "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters.update(_filters())
    return env.get_template(template).render(variables)


@pytest.fixture(scope="module")
def variables() -> dict[str, Any]:
    return role_variables(fake_inventory())


@pytest.fixture(scope="module")
def rendered(variables) -> dict[str, str]:
    return {path.name: render(path.name, variables) for path in sorted((ROLE / "templates").glob("*.j2"))}


def env_file(text: str) -> dict[str, str]:
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", maxsplit=1) for line in lines)


def test_the_datasource_is_the_first_gateway_hosts_prometheus(rendered):
    data = yaml.safe_load(rendered["datasources.yaml.j2"])
    assert data["apiVersion"] == 1
    (source,) = data["datasources"]
    assert source["uid"] == "aiswarm-prometheus"
    assert source["type"] == "prometheus" and source["access"] == "proxy"
    assert source["url"] == "http://10.20.0.10:9090"
    assert source["isDefault"] is True and source["editable"] is False
    assert source["jsonData"]["timeInterval"] == "15s"


def test_the_datasource_follows_the_prometheus_port_and_scrape_interval():
    variables = role_variables({**fake_inventory(prometheus_port=9191), "prometheus_scrape_interval": "30s"})
    (source,) = yaml.safe_load(render("datasources.yaml.j2", variables))["datasources"]
    assert source["url"] == "http://10.20.0.10:9191"
    assert source["jsonData"]["timeInterval"] == "30s"


def test_every_dashboard_refers_to_the_provisioned_datasource_uid(variables):
    uids = {
        panel["datasource"]["uid"] for board in dash.load_all().values() for panel in dash.data_panels(board)
    }
    assert uids == {variables["_grafana_datasource_uid"]}


def test_the_dashboard_provider_reads_the_copied_files(rendered, variables):
    data = yaml.safe_load(rendered["dashboards.yaml.j2"])
    assert data["apiVersion"] == 1
    (provider,) = data["providers"]
    assert provider["type"] == "file"
    assert (
        provider["options"]["path"]
        == variables["_grafana_dashboards_dir"]
        == "/var/lib/grafana/dashboards/aiswarm"
    )
    assert provider["folder"] == "AI Swarm"
    assert provider["updateIntervalSeconds"] == 30 and isinstance(provider["updateIntervalSeconds"], int)
    assert provider["allowUiUpdates"] is False


def test_the_role_copies_exactly_the_shipped_dashboards(variables):
    assert sorted(variables["_grafana_dashboards"]) == sorted(dash.DASHBOARDS)


def test_settings_keep_grafana_private_and_offline(rendered, variables):
    settings = env_file(rendered["aiswarm.env.j2"])
    assert settings["GF_SERVER_HTTP_ADDR"] == "10.20.0.10"
    assert settings["GF_SERVER_HTTP_PORT"] == "3001"
    assert settings["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert settings["GF_USERS_ALLOW_SIGN_UP"] == "false"
    for name in (
        "GF_ANALYTICS_REPORTING_ENABLED",
        "GF_ANALYTICS_CHECK_FOR_UPDATES",
        "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES",
        "GF_NEWS_NEWS_FEED_ENABLED",
        "GF_SNAPSHOTS_EXTERNAL_ENABLED",
    ):
        assert settings[name] == "false", name
    assert settings["GF_SECURITY_ADMIN_USER"] == "admin"
    assert settings["GF_SECURITY_ADMIN_PASSWORD"] == PASSWORD
    assert settings["GF_PATHS_PROVISIONING"] == variables["_grafana_provisioning_dir"]


def test_the_unit_drop_in_reads_the_settings(rendered, variables):
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string(rendered["aiswarm.conf.j2"])
    assert unit["Service"]["EnvironmentFile"] == variables["_grafana_env_file"]


def test_the_apt_source_is_grafanas_repository_trusted_with_its_key_only(rendered):
    fields = dict(
        line.split(": ", maxsplit=1)
        for line in rendered["grafana.sources.j2"].splitlines()
        if not line.startswith("#")
    )
    assert fields == {
        "Types": "deb",
        "URIs": "https://apt.grafana.com",
        "Suites": "stable",
        "Components": "main",
        "Signed-By": "/etc/apt/keyrings/grafana.asc",
    }


def _tasks() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, task)
        for path in [*sorted((ROLE / "tasks").glob("*.yml")), ROLE / "handlers" / "main.yml"]
        for task in yaml.safe_load(path.read_text(encoding="utf-8"))
    ]


def test_the_password_is_written_only_to_the_settings_file_which_is_0640(rendered):
    holders = [name for name, text in rendered.items() if PASSWORD in text]
    assert holders == ["aiswarm.env.j2"]
    writers = [
        task
        for file, task in _tasks()
        if task.get("ansible.builtin.template", {}).get("src") == "aiswarm.env.j2"
    ]
    (task,) = writers
    args = task["ansible.builtin.template"]
    assert (args["owner"], args["group"], args["mode"]) == ("root", "root", "0640")
    assert task["no_log"] is True


def test_every_task_that_handles_the_password_hides_its_output():
    for file, task in _tasks():
        module_args = {key: value for key, value in task.items() if key not in ("name", "no_log")}
        for args in module_args.values():
            if isinstance(args, dict):
                args.pop("fail_msg", None)
        if "grafana_admin_password" in json.dumps(module_args):
            assert task.get("no_log") is True, f"{file}: {task['name']}"


# --------------------------------------------------------------------------- pre-flight
PLAYBOOK = """\
- hosts: gateway
  gather_facts: true
  gather_subset: ['!all']
  roles:
    - aiswarm.swarm.grafana
"""
LOCALHOST = {
    "ansible_connection": "local",
    "ansible_python_interpreter": sys.executable,
    "swarm_private_address": "127.0.0.1",
}
INVENTORY = {"all": {"children": {"gateway": {"hosts": {"localhost": LOCALHOST}}}}}


def preflight(tmp_path: Path, **extra: Any) -> subprocess.CompletedProcess[str]:
    (tmp_path / "play.yml").write_text(PLAYBOOK, encoding="utf-8")
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(INVENTORY), encoding="utf-8")
    extra = {"grafana_admin_password": PASSWORD, **extra}
    extra = {key: value for key, value in extra.items() if value is not None}
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"))
    return subprocess.run(
        [str(BINDIR / "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"), str(tmp_path / "play.yml"),
         "--tags", "grafana_preflight", "-e", json.dumps(extra)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


def test_good_input_passes_the_preflight_and_changes_nothing(tmp_path):
    proc = preflight(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "changed=0" in proc.stdout and "failed=0" in proc.stdout
    assert PASSWORD not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"grafana_admin_password": None}, "grafana_admin_password is required"),
        ({"grafana_admin_password": "Sh0rt-pass"}, "grafana_admin_password: expected 12 or more characters"),
        (
            {"grafana_admin_password": "Dollar$ign-secret-1"},
            "grafana_admin_password: expected 12 or more characters",
        ),
        ({"grafana_admin_user": "ad min"}, "grafana_admin_user must be a login"),
        ({"grafana_listen_address": "0.0.0.0"}, "grafana_listen_address must be the node's private address"),
        ({"grafana_port": 70000}, "grafana_port must be within 1-65535"),
        ({"grafana_port": "three-thousand"}, "grafana_port"),
        ({"grafana_prometheus_url": "prometheus:9090"}, "grafana_prometheus_url: expected an http(s) URL"),
        ({"grafana_version": "latest please"}, "grafana_version must be empty or an apt version"),
        (
            {"grafana_prometheus_scrape_interval": "fast"},
            "grafana_prometheus_scrape_interval a Prometheus duration",
        ),
    ],
    ids=[
        "no-password",
        "short-password",
        "dollar-in-password",
        "user",
        "every-interface",
        "port-range",
        "port-type",
        "prometheus-url",
        "version",
        "scrape-interval",
    ],
)
def test_bad_input_is_refused_before_any_change_naming_the_variable(tmp_path, extra, named):
    proc = preflight(tmp_path, **extra)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert named in out, out
    assert "changed=0" in proc.stdout or "changed=" not in proc.stdout
    for value in ("Sh0rt-pass", "Dollar$ign-secret-1", PASSWORD):
        assert value not in out, f"the password {value!r} shows in the output"


def test_the_playbook_passes_ansible_syntax_check():
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"))
    inventory, playbook = ROOT / "inventories" / "lab" / "hosts.yml", ROOT / "playbooks" / "grafana.yml"
    proc = subprocess.run(
        [str(BINDIR / "ansible-playbook"), "--syntax-check", "-i", str(inventory), str(playbook)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr

"""The alert rules render with the role's defaults and pass promtool.

Each ``roles/prometheus/templates/rules/<area>.rules.yml.j2`` is rendered the way the role renders it
(Jinja with ``[[ ]]`` as variable delimiters, so Prometheus' own ``{{ }}`` stays literal) from the
``prometheus_alert_*`` defaults, checked with ``promtool check rules`` and unit-tested with
``promtool test rules tests/rules/<area>.test.yml``. promtool comes from ``lab/fetch-prom-tools.sh``
(Debian's package, unpacked into the virtualenv); without it these tests fail and say so.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import jinja2
import jinja2.meta
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "prometheus"
TEMPLATES = ROLE / "templates" / "rules"
RULE_TESTS = ROOT / "tests" / "rules"
SUFFIX = ".rules.yml.j2"
AREAS = sorted(path.name.removesuffix(SUFFIX) for path in TEMPLATES.glob(f"*{SUFFIX}"))
SEVERITIES = {"page", "ticket", "info"}


def alert_inputs() -> dict[str, object]:
    """The role's ``prometheus_alert_*`` defaults (the scrape settings above them may be templates)."""
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    return {name: value for name, value in defaults.items() if name.startswith("prometheus_alert_")}


def _comment(text: str) -> str:
    """Ansible's ``comment`` filter with its defaults."""
    return "\n".join(["#", *(f"# {line}" for line in text.splitlines()), "#"])


def environment() -> jinja2.Environment:
    """Jinja set up as ansible.builtin.template renders the rules (trim_blocks is its default)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        variable_start_string="[[",
        variable_end_string="]]",
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["comment"] = _comment
    return env


def render(area: str, inputs: dict[str, object]) -> str:
    return environment().get_template(f"{area}{SUFFIX}").render(ansible_managed="Ansible managed", **inputs)


def promtool() -> str:
    """The venv's promtool (what lab/fetch-prom-tools.sh installs), else one on PATH."""
    for candidate in (Path(sys.prefix) / "bin" / "promtool", shutil.which("promtool")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    pytest.fail(
        f"promtool is not installed (neither {sys.prefix}/bin/promtool nor on PATH): "
        "run lab/fetch-prom-tools.sh, which puts Debian's promtool into the virtualenv",
        pytrace=False,
    )


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every rule file rendered with the defaults, next to a copy of its unit tests."""
    folder = tmp_path_factory.mktemp("rules")
    inputs = alert_inputs()
    for area in AREAS:
        (folder / f"{area}.rules.yml").write_text(render(area, inputs))
        shutil.copy(RULE_TESTS / f"{area}.test.yml", folder)
    return folder


def _rules(folder: Path, area: str) -> list[dict]:
    groups = yaml.safe_load((folder / f"{area}.rules.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_every_area_has_its_unit_tests():
    assert {"swarm", "gateway", "engines", "slo", "meta"} <= set(AREAS)
    tests = sorted(path.name.removesuffix(".test.yml") for path in RULE_TESTS.glob("*.test.yml"))
    assert tests == AREAS


@pytest.mark.parametrize("area", AREAS)
def test_promtool_check_rules(rendered: Path, area: str):
    result = run_promtool("check", "rules", f"{area}.rules.yml", cwd=rendered)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("area", AREAS)
def test_promtool_test_rules(rendered: Path, area: str):
    result = run_promtool("test", "rules", f"{area}.test.yml", cwd=rendered)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("area", AREAS)
def test_alerts_have_severity_summary_and_description(rendered: Path, area: str):
    for rule in _rules(rendered, area):
        if "alert" not in rule:
            continue
        assert rule.get("labels", {}).get("severity") in SEVERITIES, rule["alert"]
        assert {"summary", "description"} <= set(rule.get("annotations", {})), rule["alert"]
        assert "for" in rule, rule["alert"]


@pytest.mark.parametrize("area", AREAS)
def test_every_alert_has_a_firing_and_a_quiet_case(rendered: Path, area: str):
    alerts = {rule["alert"] for rule in _rules(rendered, area) if "alert" in rule}
    cases = [
        case
        for test in yaml.safe_load((RULE_TESTS / f"{area}.test.yml").read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    firing = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert alerts, f"{area}: no alert rules"
    assert {case["alertname"] for case in cases} <= alerts, f"{area}: tests name alerts that do not exist"
    assert alerts - firing == set(), f"{area}: alerts without a case that fires"
    assert alerts - quiet == set(), f"{area}: alerts without a case that stays quiet"


def test_every_input_of_the_templates_is_a_role_input():
    """The templates use only prometheus_alert_* inputs, each with a default, a spec entry, and a use."""
    env = environment()
    used: set[str] = set()
    for area in AREAS:
        source = (TEMPLATES / f"{area}{SUFFIX}").read_text()
        used |= jinja2.meta.find_undeclared_variables(env.parse(source)) - {"ansible_managed"}
    spec = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    options = spec["main"]["options"]
    defaults = alert_inputs()
    assert used == set(defaults), "inputs used by the templates and prometheus_alert_* defaults differ"
    for name, value in defaults.items():
        option = options[name]
        kind = {bool: "bool", int: "int", float: "float", str: "str"}[type(value)]
        assert option["type"] == kind or (option["type"] == "float" and kind == "int"), name
        assert option.get("default") == value, name


NUMBERS = sorted(name for name, value in alert_inputs().items() if isinstance(value, int | float))


@pytest.mark.parametrize("name", NUMBERS)
def test_a_threshold_that_is_not_a_number_stops_the_rendering(name: str):
    inputs = alert_inputs() | {name: "hot"}
    with pytest.raises(TypeError, match="must be real number"):
        for area in AREAS:
            render(area, inputs)


def test_a_threshold_given_as_a_string_number_renders():
    """Extra vars from the command line arrive as strings."""
    rules = render("swarm", alert_inputs() | {"prometheus_alert_gpu_temperature_celsius": "85.5"})
    assert '{job="swarm_agent"} > 85.5\n' in rules


def test_a_bad_duration_fails_promtool_check_rules(tmp_path: Path):
    (tmp_path / "engines.rules.yml").write_text(
        render("engines", alert_inputs() | {"prometheus_alert_engine_down_for": "soon"})
    )
    result = run_promtool("check", "rules", "engines.rules.yml", cwd=tmp_path)
    assert result.returncode != 0 and "soon" in result.stdout + result.stderr, result.stdout + result.stderr

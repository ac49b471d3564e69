"""The arm64 check: pip's output, wheel tags, Debian's index and the roles it reads (no network).

The pip outputs below were recorded from pip 26.3 (`pip download --only-binary=:all: --platform
manylinux..._aarch64 ...` against PyPI, 2026-12-04); the real negative cases against PyPI and
Debian run in the check's own self-test (`tests/run.sh arch`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import lzma
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
_SPEC = importlib.util.spec_from_file_location("check_arm64", ROOT / "tests" / "arch" / "check_arm64.py")
assert _SPEC is not None and _SPEC.loader is not None
arch = importlib.util.module_from_spec(_SPEC)
sys.modules["check_arm64"] = arch  # dataclasses look their module up while the module loads
_SPEC.loader.exec_module(arch)

PIP_SUCCESS = """\
Collecting idna==3.10
  Downloading idna-3.10-py3-none-any.whl (70 kB)
Collecting fastuuid<1.0,>=0.14.0 (from litellm==1.108.7->litellm[proxy]==1.108.7)
  Downloading fastuuid-0.14.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl (278 kB)
Saved ./neg2/idna-3.10-py3-none-any.whl
  File was already downloaded /var/cache/aiswarm/arch/wheels-cp311-aarch64/\
fastuuid-0.14.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl
Successfully downloaded idna fastuuid
"""

PIP_NO_ARM64_WHEEL = """\
ERROR: Could not find a version that satisfies the requirement tensorflow-io-gcs-filesystem<0.30,>=0.28 \
(from versions: 0.30.0, 0.31.0, 0.32.0, 0.33.0, 0.34.0, 0.35.0, 0.36.0, 0.37.0, 0.37.1)
ERROR: No matching distribution found for tensorflow-io-gcs-filesystem<0.30,>=0.28
"""

PIP_SDIST_ONLY = """\
ERROR: Ignored the following yanked versions: 6.0.2rc1
ERROR: Could not find a version that satisfies the requirement pyyaml==5.3.1 \
(from versions: 6.0, 6.0.1, 6.0.2, 6.0.3, 6.0.4)
ERROR: No matching distribution found for pyyaml==5.3.1
"""

PIP_DEPENDENCY = """\
Looking in links: /tmp/links
Processing /tmp/links/aiswarm_arch_probe-1.0-py3-none-any.whl
ERROR: Could not find a version that satisfies the requirement tensorflow-io-gcs-filesystem==0.29.0 \
(from aiswarm-arch-probe) (from versions: 0.30.0, 0.31.0, 0.32.0, 0.33.0, 0.34.0, 0.35.0, 0.36.0, 0.37.0, \
0.37.1)
ERROR: No matching distribution found for tensorflow-io-gcs-filesystem==0.29.0 (from aiswarm-arch-probe)
"""

PIP_CONFLICT = """\
Collecting requests==2.31.0
  Downloading requests-2.31.0-py3-none-any.whl (62 kB)
Collecting urllib3<1.21
  Downloading urllib3-1.20-py2.py3-none-any.whl (111 kB)
ERROR: Cannot install requests==2.31.0 and urllib3<1.21 because these package versions have conflicting \
dependencies.

The conflict is caused by:
    The user requested urllib3<1.21
    requests 2.31.0 depends on urllib3<3 and >=1.21.1

Additionally, some packages in these conflicts have no matching distributions available for your environment:
    urllib3

To fix this you could try to:
1. loosen the range of package versions you've specified
2. remove package versions to allow pip to attempt to solve the dependency conflict

ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/
"""

PIP_OFFLINE = """\
Looking in indexes: http://127.0.0.1:9/simple
WARNING: Retrying (Retry(total=0, connect=None, read=None, redirect=None, status=None)) after connection \
broken by 'NewConnectionError("HTTPConnection(host='127.0.0.1', port=9): Failed to establish a new \
connection: [Errno 111] Connection refused")': /simple/requests/
ERROR: Could not find a version that satisfies the requirement requests==2.31.0 (from versions: none)
ERROR: No matching distribution found for requests==2.31.0
"""

# An excerpt of bookworm's main/binary-arm64/Packages, with two made-up packages at the end:
# an `Architecture: all` package whose dependency has no arm64 build, and one that takes either.
PACKAGES = """\
Package: mawk
Version: 1.3.4.20200120-3.1
Architecture: arm64
Provides: awk
Pre-Depends: libc6 (>= 2.34)

Package: libc6
Version: 2.36-9+deb12u13
Architecture: arm64

Package: tzdata
Version: 2026b-0+deb12u1
Architecture: all
Depends: debconf (>= 0.5) | debconf-2.0

Package: debconf
Version: 1.5.82
Architecture: all
Provides: debconf-2.0

Package: postgresql
Version: 15+248+deb12u1
Architecture: all
Depends: postgresql-15

Package: postgresql-15
Version: 15.16-0+deb12u1
Architecture: arm64
Depends: libc6 (>= 2.34), tzdata, awk:any

Package: needs-x86-only
Version: 1.0
Architecture: all
Depends: libc6, intel-thing (>= 2)

Package: takes-either
Version: 1.0
Architecture: all
Depends: intel-thing | mawk
"""


def _index() -> object:
    return arch.parse_packages(PACKAGES, "bookworm main binary-arm64 (test)")


# --- pip's output ----------------------------------------------------------------------------


def test_success_lists_every_file_pip_saved_or_found():
    outcome = arch.parse_pip_output(0, PIP_SUCCESS)
    assert outcome.ok and outcome.missing is None and outcome.network is None
    assert outcome.wheels == [
        "idna-3.10-py3-none-any.whl",
        "fastuuid-0.14.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
    ]


@pytest.mark.parametrize(
    ("output", "missing", "chain", "versions"),
    [
        (PIP_NO_ARM64_WHEEL, "tensorflow-io-gcs-filesystem", None, "0.30.0, 0.31.0, 0.32.0"),
        (PIP_SDIST_ONLY, "pyyaml", None, "6.0, 6.0.1"),
        (PIP_DEPENDENCY, "tensorflow-io-gcs-filesystem", "aiswarm-arch-probe", "0.30.0"),
        (PIP_CONFLICT, "urllib3", None, None),
    ],
    ids=["top-level pin", "sdist only", "dependency", "conflict"],
)
def test_a_failure_names_the_package_without_a_usable_wheel(output, missing, chain, versions):
    outcome = arch.parse_pip_output(1, output)
    assert not outcome.ok and outcome.network is None
    assert outcome.missing == missing
    assert outcome.chain == chain
    assert (outcome.versions or "").startswith(versions or "")
    assert missing in arch.explain(outcome, "aarch64")


def test_an_unreachable_index_is_a_network_error_not_a_missing_wheel(monkeypatch, tmp_path):
    outcome = arch.parse_pip_output(1, PIP_OFFLINE)
    assert outcome.network and "NewConnectionError" in outcome.network

    def fake_run(*_args, **_kwargs):
        return subprocess.CompletedProcess([], 1, stdout=PIP_OFFLINE)

    monkeypatch.setattr(arch.subprocess, "run", fake_run)
    with pytest.raises(arch.NetworkError, match="could not reach"):
        arch.pip_download(["requests==2.31.0"], tmp_path, index_url="http://127.0.0.1:9/simple")


def test_a_retry_that_then_succeeded_is_no_network_error():
    retried = PIP_OFFLINE.splitlines()[1] + "\n" + PIP_SUCCESS
    outcome = arch.parse_pip_output(0, retried)
    assert outcome.ok and outcome.network is None and len(outcome.wheels) == 2


# --- what pip is asked and which wheels pass -------------------------------------------------


def test_platform_tags_cover_every_manylinux_up_to_debian_12s_glibc():
    tags = arch.platform_tags("aarch64", (2, 36))
    assert tags[0] == "manylinux2014_aarch64"
    assert "manylinux_2_17_aarch64" in tags and "manylinux_2_31_aarch64" in tags
    assert tags[-1] == "manylinux_2_36_aarch64"
    assert not any("x86_64" in tag or "2_37" in tag or "2_16" in tag for tag in tags)
    assert "manylinux_2_5_x86_64" in arch.platform_tags("x86_64")


def test_pip_is_asked_for_wheels_only_for_the_target():
    command = arch.pip_command(
        ["litellm[proxy]==1.0"], Path("/c/wheels"), "aarch64", "https://pypi.org/simple"
    )
    assert command[:2] == [sys.executable, "-c"] and command[3] == "download"
    assert "platform.machine = lambda: 'aarch64'" in command[2]
    assert "--only-binary=:all:" in command and command[-1] == "litellm[proxy]==1.0"
    assert command[command.index("--python-version") + 1] == "311"
    platforms = [command[i + 1] for i, arg in enumerate(command) if arg == "--platform"]
    assert platforms == arch.platform_tags("aarch64")
    abis = [command[i + 1] for i, arg in enumerate(command) if arg == "--abi"]
    assert abis == ["cp311", "abi3", "none"]


def test_the_shim_makes_pip_evaluate_markers_for_aarch64():
    code = arch._MARKER_SHIM.format(machine="aarch64", python="3.11.2")
    code += "import json\nfrom pip._vendor.packaging.markers import default_environment\n"
    code += "print(json.dumps(default_environment()))\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    env = json.loads(result.stdout)
    assert env["platform_machine"] == "aarch64"
    assert env["python_version"] == "3.11" and env["python_full_version"] == "3.11.2"


def test_pip_runs_without_this_machines_wheel_folders_indexes_and_constraints(monkeypatch):
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "file:///opt/pypi/simple")
    monkeypatch.setenv("PIP_CONSTRAINT", "/etc/constraints.txt")
    monkeypatch.setenv("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt")
    env = arch.pip_environment()
    assert not {"PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT"} & set(env)
    assert env["PIP_CERT"] == "/etc/ssl/certs/ca-certificates.crt"
    assert env["PIP_CONFIG_FILE"] == arch.os.devnull


@pytest.mark.parametrize(
    ("filename", "ok", "says"),
    [
        ("idna-3.10-py3-none-any.whl", True, "pure Python"),
        ("six-1.17.0-py2.py3-none-any.whl", True, "pure Python"),
        ("litellm-1.108.7-cp310-abi3-manylinux_2_28_aarch64.whl", True, "manylinux_2_28_aarch64"),
        ("pyyaml-6.0.4-cp311-cp311-manylinux2014_aarch64.manylinux_2_17_aarch64.whl", True, "aarch64"),
        ("x-1.0-cp311-cp311-manylinux_2_39_aarch64.whl", False, "glibc 2.36"),
        ("x-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", False, "not aarch64"),
        ("x-1.0-cp311-cp311-musllinux_1_2_aarch64.whl", False, "musl"),
        ("PyYAML-5.3.1.tar.gz", False, "from source"),
    ],
)
def test_wheel_verdict(filename, ok, says):
    verdict = arch.wheel_verdict(filename, "aarch64", (2, 36))
    assert verdict[0] is ok and says in verdict[1]


def test_every_pin_is_tried_alone_after_a_failure_to_name_the_offender(monkeypatch, tmp_path, capsys):
    outcomes = {
        ("good==1.0", "bad==2.0"): arch.parse_pip_output(
            1, PIP_SDIST_ONLY.replace("pyyaml==5.3.1", "bad==2.0")
        ),
        ("good==1.0",): arch.parse_pip_output(0, PIP_SUCCESS),
        ("bad==2.0",): arch.parse_pip_output(1, PIP_SDIST_ONLY.replace("pyyaml==5.3.1", "bad==2.0")),
    }
    monkeypatch.setattr(arch, "pip_download", lambda reqs, *_a, **_k: outcomes[tuple(reqs)])
    report = arch.Report()
    arch.check_pip([("good==1.0", "role a"), ("bad==2.0", "role b")], tmp_path, "aarch64", "x", report, False)
    assert len(report.failures) == 1
    assert report.failures[0].startswith("bad==2.0: no aarch64 or pure-Python wheel for bad==2.0")
    assert "[role b]" in report.failures[0]
    assert "ok   good==1.0" in capsys.readouterr().out


def test_a_project_copied_to_the_node_must_be_pure_python(tmp_path):
    label, requirements, problems = arch.read_project(ROOT)
    assert label.startswith("aiswarm-swarm ") and not problems
    assert any(req.startswith("setuptools") for req in requirements)
    (tmp_path / "src" / "fast").mkdir(parents=True)
    (tmp_path / "src" / "fast" / "speedups.c").write_text("int x;\n")
    (tmp_path / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68", "cython"]\n[project]\nname = "fast"\nversion = "1"\n'
        '[tool.setuptools.packages.find]\nwhere = ["src"]\n'
    )
    label, requirements, problems = arch.read_project(tmp_path)
    assert label == "fast 1" and requirements == ["setuptools>=68", "cython"]
    assert problems == ["has extension sources: src/fast/speedups.c"]


# --- Debian's index --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ok", "says"),
    [
        ("postgresql-15", True, "arm64 build 15.16-0+deb12u1; 4 dependencies"),
        ("tzdata", True, "Architecture: all, 2026b-0+deb12u1"),
        ("postgresql", True, "Architecture: all"),
        ("awk", True, "virtual, provided by mawk"),
        ("tzdata=2026b-0+deb12u1", True, "Architecture: all"),
        ("takes-either", True, "2 dependencies"),  # mawk, libc6
        ("grub-pc", False, "not in bookworm main binary-arm64"),
        ("needs-x86-only", False, "no arm64 package for intel-thing (needed by needs-x86-only)"),
        ("libc*", True, "pattern: libc6"),
    ],
)
def test_apt_verdict(name, ok, says):
    verdict = arch.apt_verdict(name, _index(), "arm64")
    assert verdict[0] is ok and says in verdict[1], verdict


def test_dependencies_are_followed_to_the_end():
    pulled, unmet = arch.dependency_closure("postgresql", _index())
    assert unmet == [] and pulled == 5  # postgresql-15, libc6, tzdata, debconf, mawk (for awk)


def test_release_entry_and_a_cached_index_that_is_fetched_once(monkeypatch, tmp_path):
    packages_xz = lzma.compress(PACKAGES.encode())
    sha = hashlib.sha256(packages_xz).hexdigest()
    release = (
        "Codename: bookworm\nDate: Sat, 11 Jul 2026 10:16:37 UTC\nMD5Sum:\n"
        f" 0123 {len(packages_xz)} main/binary-arm64/Packages.xz\nSHA256:\n"
        f" {'0' * 64} 10 main/binary-amd64/Packages.xz\n"
        f" {sha} {len(packages_xz)} main/binary-arm64/Packages.xz\n"
    )
    assert arch._release_entry(release, "main/binary-arm64/Packages.xz") == (
        sha,
        len(packages_xz),
        "Sat, 11 Jul 2026 10:16:37 UTC",
    )
    fetched = []

    def fake_get(url, timeout=30):
        fetched.append(url.rsplit("/", 1)[-1])
        return release.encode() if url.endswith("/Release") else packages_xz

    monkeypatch.setattr(arch, "_http_get", fake_get)
    for _run in range(2):
        index = arch.deb_index("http://deb.example/debian", "bookworm", "arm64", tmp_path)
        assert tuple(index.packages["mawk"]) == ("arm64", "1.3.4.20200120-3.1")
        assert "Release of Sat, 11 Jul 2026" in index.label
    assert fetched == ["Release", "Packages.xz", "Release"]  # the second run read its summary
    monkeypatch.setattr(arch, "_http_get", lambda url, timeout=30: release.replace(sha, "f" * 64).encode())
    with pytest.raises(arch.CheckError, match="differs from the Release"):
        arch.deb_index("http://deb.example/debian", "bookworm", "arm64", tmp_path / "other")


# --- the roles -------------------------------------------------------------------------------


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_the_gateway_roles_are_the_plays_of_site_yml_for_its_groups():
    assert arch.group_ancestors(ROOT, "gateway") == {"gateway", "swarm", "all"}
    roles = arch.roles_for_group(ROOT, "gateway")
    assert roles == [
        "common", "postgresql", "redis", "litellm", "exporters", "alertmanager", "prometheus", "swarm_agent",
        "journal",
    ]  # fmt: skip
    assert "vllm" not in arch.roles_for_group(ROOT, "gateway")
    assert "vllm" in arch.roles_for_group(ROOT, "inference")


def test_the_gateway_pins_and_packages_are_read_from_the_roles():
    needs = arch.collect(ROOT, arch.roles_for_group(ROOT, "gateway"))
    pins = {need.name for need in needs if need.kind == "pip"}
    packages = {need.name for need in needs if need.kind == "apt"}
    litellm = _yaml(ROOT / "roles/litellm/defaults/main.yml")
    agent = _yaml(ROOT / "roles/swarm_agent/defaults/main.yml")
    assert pins == {
        f"litellm[proxy]=={litellm['litellm_version']}",
        *litellm["litellm_pip_extra_packages"],
        *agent["swarm_agent_pip_packages"],
    }
    expected = set(_yaml(ROOT / "roles/common/defaults/main.yml")["common_packages"])
    expected |= set(_yaml(ROOT / "roles/postgresql/vars/main.yml")["_postgresql_packages"])
    expected |= set(_yaml(ROOT / "roles/redis/vars/main.yml")["_redis_packages"])
    expected |= set(_yaml(ROOT / "roles/exporters/vars/main.yml")["_exporters_packages"].values())
    expected |= set(_yaml(ROOT / "roles/alertmanager/vars/main.yml")["_alertmanager_packages"])
    expected |= set(_yaml(ROOT / "roles/prometheus/vars/main.yml")["_prometheus_packages"])
    expected |= set(_yaml(ROOT / "roles/journal/vars/main.yml")["_journal_packages"])
    assert expected | {"python3-packaging", "nodejs", "npm"} == packages
    nodejs = next(need for need in needs if need.name == "nodejs")
    assert nodejs.when == ("litellm_database_enabled | bool",)
    assert [need.name for need in needs if need.kind == "project"] == [str(ROOT)]


def _role(roles: Path, name: str, tasks: dict[str, list], defaults=None, role_vars=None) -> None:
    for file, content in tasks.items():
        (roles / name / "tasks").mkdir(parents=True, exist_ok=True)
        (roles / name / "tasks" / file).write_text(yaml.safe_dump(content))
    for folder, content in (("defaults", defaults), ("vars", role_vars)):
        if content is not None:
            (roles / name / folder).mkdir(parents=True, exist_ok=True)
            (roles / name / folder / "main.yml").write_text(yaml.safe_dump(content))


@pytest.fixture
def toy_roles(tmp_path: Path) -> Path:
    roles = tmp_path / "roles"
    helper_tasks = {
        "main.yml": [{"name": "Refuse", "ansible.builtin.fail": {"msg": "internal"}}],
        "install.yml": [{"name": "Packages", "ansible.builtin.apt": {"name": "{{ _helper_packages }}"}}],
        "pip.yml": [{"name": "Pins", "ansible.builtin.pip": {"name": "{{ _helper_requirements }}"}}],
    }
    _role(roles, "_helper", helper_tasks, defaults={"_helper_packages": []})
    svc_tasks = {
        "main.yml": [{"name": "Install", "ansible.builtin.include_tasks": {"file": "install.yml"}}],
        "install.yml": [
            {
                "name": "Through the helper",
                "ansible.builtin.include_role": {"name": "aiswarm.swarm._helper", "tasks_from": "{{ step }}"},
                "loop": ["install.yml", "pip.yml"],
                "loop_control": {"loop_var": "step"},
                "vars": {
                    "_helper_packages": ["libfoo1", "foo-tools"],
                    "_helper_requirements": "{{ _svc_pins }}",
                },
            },
            {
                "name": "Only with the database",
                "when": "svc_db | bool",
                "block": [{"name": "Client", "ansible.builtin.apt": {"name": "{{ svc_db_client }}"}}],
            },
            {"name": "Not an install", "ansible.builtin.command": {"argv": ["true"]}},
        ],
    }
    _role(
        roles,
        "svc",
        svc_tasks,
        defaults={"svc_version": "1.2.3", "svc_extra": ["bar==4"], "svc_db": True, "svc_db_client": "dbc"},
        role_vars={"_svc_pins": "{{ ['foo[x]==' ~ svc_version] + svc_extra }}"},
    )
    return tmp_path


def test_includes_loops_and_jinja_references_are_followed(toy_roles: Path):
    needs = arch.RoleReader(toy_roles).read("aiswarm.swarm.svc")
    assert [(n.kind, n.name) for n in needs] == [
        ("apt", "libfoo1"),
        ("apt", "foo-tools"),
        ("pip", "foo[x]==1.2.3"),
        ("pip", "bar==4"),
        ("apt", "dbc"),
    ]
    assert needs[0].role == "svc" and needs[0].source.endswith("roles/_helper/tasks/install.yml")
    assert needs[-1].when == ("svc_db | bool",)


def test_a_pin_change_in_the_role_is_what_the_check_sees(toy_roles: Path):
    defaults = toy_roles / "roles/svc/defaults/main.yml"
    defaults.write_text(defaults.read_text().replace("1.2.3", "9.9.9"))
    pins = [n.name for n in arch.RoleReader(toy_roles).read("svc") if n.kind == "pip"]
    assert pins == ["foo[x]==9.9.9", "bar==4"]


def test_a_value_the_check_cannot_know_is_an_error_naming_it(toy_roles: Path):
    role_vars = toy_roles / "roles/svc/vars/main.yml"
    role_vars.write_text("_svc_pins: \"{{ ['foo==' ~ ansible_facts['python_version']] }}\"\n")
    with pytest.raises(arch.CheckError, match="'ansible_facts' is not a default, var or task var"):
        arch.RoleReader(toy_roles).read("svc")


# --- the command -----------------------------------------------------------------------------


def test_without_the_network_the_check_fails_loudly(monkeypatch, tmp_path, capsys):
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    status = arch.main(
        [
            "--index-url",
            "http://127.0.0.1:9/simple",
            "--deb-mirror",
            "http://127.0.0.1:9/debian",
            "--cache-dir",
            str(tmp_path),
        ]
    )
    err = capsys.readouterr().err
    assert status == 2
    assert "the network is needed and was not there" in err and "never passes offline" in err

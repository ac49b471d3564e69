"""Check that what the gateway's roles install exists for arm64 (aarch64) on Debian 12.

The design's gateway node ("oracle", an Ampere A1) is aarch64; every other machine here is
x86_64, so nothing else would notice a pin that has no arm64 build. This check reads, from the
roles themselves (never from a copy of their lists), what the roles that site.yml runs on the
gateway group install, and proves two things without an arm64 machine:

- every Python requirement they pip-install resolves, with all its dependencies, to pure-Python
  wheels or manylinux aarch64 wheels for CPython 3.11 and glibc 2.36 (Debian 12's), never to a
  source build: `pip download --only-binary=:all: --platform manylinux..._aarch64 ...` against
  PyPI, with the environment markers evaluated for aarch64 (pip evaluates them for the host
  otherwise, pypa/pip#11664); a local project the roles copy to the node (src/, pyproject.toml)
  must be pure Python and its build requirements resolve the same way;
- every Debian package they apt-install is in bookworm's arm64 index (Packages.xz of the mirror),
  built for arm64 or `Architecture: all`, or provided by such a package, and so is every package
  its Depends and Pre-Depends pull in. Packages a task installs only under a `when:` are checked
  too (the condition is printed): production turns on what the lab leaves off.

Before that it proves it can fail: a self-test runs the same code on pins known to lack an arm64
build (PyPI and Debian) and on the same pins for x86_64. Without the network it fails, loudly.

Run from anywhere: `python tests/arch/check_arm64.py [--role litellm ...] [--requirement PIN]`.
It lives under tests/ beside tests/lint/: a test-time check of the roles, neither shipped with the
collection (galaxy.yml ignores tests/) nor run on a node (src/ holds what nodes get).
Exit status: 0 all checks pass, 1 a pin or package has no arm64 build (named), 2 the check could
not run (network, unreadable role). Downloads are cached (see --cache-dir) so a rerun is quick.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import os
import re
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections import ChainMap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, TemplateError, meta
from jinja2.nativetypes import NativeEnvironment

ROOT = Path(__file__).resolve().parents[2]
COLLECTION = "aiswarm.swarm"

# The gateway's operating system: Debian 12 (bookworm) ships CPython 3.11.2 and glibc 2.36.
PYTHON_VERSION = "3.11.2"
GLIBC = (2, 36)
DEBIAN_SUITE = "bookworm"
DEBIAN_ARCH = {"aarch64": "arm64", "x86_64": "amd64"}
DEFAULT_INDEX_URL = os.environ.get("AISWARM_ARCH_INDEX_URL", "https://pypi.org/simple")
# The lab image's mirror (lab/build-image.sh); its apt sources hold only `bookworm main`.
DEFAULT_DEB_MIRROR = os.environ.get("AISWARM_DEB_MIRROR", "http://deb.debian.org/debian")
HTTP_TIMEOUT_S = 30
PIP_TIMEOUT_S = 900
SUMMARY_FORMAT = 2  # of the parsed Packages index kept beside Packages.xz

# Pins the self-test must see fail on aarch64 (checked by hand on PyPI and Debian, 2026-12-04).
SELF_TEST_ARCH_PIN = "tensorflow-io-gcs-filesystem==0.29.0"  # cp311 wheels for x86_64 only, no sdist
SELF_TEST_SOURCE_PIN = "pyyaml==5.3.1"  # on Linux an sdist only (wheels for Windows only)
SELF_TEST_DEB_PACKAGE = "grub-pc"  # built for amd64 and i386 only

APT_MODULES = {"ansible.builtin.apt", "apt", "ansible.builtin.package", "package"}
PIP_MODULES = {"ansible.builtin.pip", "pip"}
COPY_MODULES = {"ansible.builtin.copy", "copy"}
INCLUDE_TASKS = {
    "ansible.builtin.include_tasks",
    "include_tasks",
    "ansible.builtin.import_tasks",
    "import_tasks",
}
INCLUDE_ROLE = {"ansible.builtin.include_role", "include_role", "ansible.builtin.import_role", "import_role"}
RELEVANT_MODULES = APT_MODULES | PIP_MODULES | COPY_MODULES | INCLUDE_TASKS | INCLUDE_ROLE
# Files whose presence means a local project compiles something when pip builds it.
EXTENSION_SUFFIXES = {".c", ".cc", ".cpp", ".cxx", ".pyx", ".pxd", ".rs", ".f", ".f90", ".go", ".so", ".pyd"}


class CheckError(Exception):
    """The check could not run (exit 2): a role it cannot read, a template it cannot resolve."""


class NetworkError(CheckError):
    """PyPI or the Debian mirror did not answer: the check must fail, never pass, without them."""


# --- What the roles install -----------------------------------------------------------------


@dataclass(frozen=True)
class Need:
    """One thing a role installs on the node: a pip requirement, a Debian package or a local project."""

    kind: str  # "pip", "apt" or "project"
    name: str
    role: str
    source: str  # the task file it comes from, relative to the repository
    when: tuple[str, ...] = ()

    def origin(self) -> str:
        text = f"{self.role}: {self.source}"
        return text + (f" (when: {' and '.join(self.when)})" if self.when else "")


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text()) if path.is_file() else None
    except yaml.YAMLError as err:
        raise CheckError(f"{path}: not valid YAML: {err}") from err


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


class Resolver:
    """Render a role variable the way Ansible would for the simple templates the roles use.

    Variables are resolved lazily and recursively from the context (task vars, role vars, role
    defaults), so `{{ _litellm_requirements }}` becomes the list built from `litellm_version`
    and `litellm_pip_extra_packages` in defaults/main.yml. Anything else (facts, hostvars, an
    Ansible-only filter) is an error naming the variable: the check never guesses a value.
    """

    def __init__(self, context: Mapping[str, Any]) -> None:
        self.context = context
        self._env = NativeEnvironment(undefined=StrictUndefined)

    def value(self, name: str, _stack: tuple[str, ...] = ()) -> Any:
        if name in _stack:
            raise CheckError(f"variable '{name}' refers to itself ({' -> '.join((*_stack, name))})")
        if name not in self.context:
            chain = f" (needed by {' -> '.join(_stack)})" if _stack else ""
            raise CheckError(f"'{name}' is not a default, var or task var of the role{chain}")
        return self.render(self.context[name], (*_stack, name))

    def render(self, value: Any, _stack: tuple[str, ...] = ()) -> Any:
        if isinstance(value, list):
            return [self.render(item, _stack) for item in value]
        if isinstance(value, dict):
            return {key: self.render(item, _stack) for key, item in value.items()}
        if not isinstance(value, str) or ("{{" not in value and "{%" not in value):
            return value
        try:
            names = meta.find_undeclared_variables(self._env.parse(value))
            variables = {name: self.value(name, _stack) for name in sorted(names)}
            return self._env.from_string(value).render(variables)
        except TemplateError as err:
            raise CheckError(f"cannot render {value!r}: {err}") from err


def _module(task: Mapping[str, Any]) -> tuple[str | None, Any]:
    for key, args in task.items():
        if key in RELEVANT_MODULES:
            return key, args
    return None, None


def _loop_items(task: Mapping[str, Any], resolver: Resolver) -> list[tuple[str, Any]] | None:
    """(loop_var, item) pairs of a looped task, or None when the task has no loop."""
    loop = task.get("loop", task.get("with_items", task.get("with_list")))
    if loop is None:
        return None
    items = resolver.render(loop)
    if not isinstance(items, list):
        raise CheckError(f"task '{task.get('name', '?')}': its loop is not a list: {items!r}")
    if "with_items" in task:
        items = [leaf for item in items for leaf in _as_list(item)]
    loop_var = (task.get("loop_control") or {}).get("loop_var", "item")
    return [(loop_var, item) for item in items]


@dataclass(frozen=True)
class Scope:
    """Variables visible to a task, in Ansible's order of precedence (a simplified one).

    frames: task and block vars and loop variables, innermost first; roles: (role_path, vars,
    defaults) of the role running the task and of the roles that included it, innermost first.
    Every role's vars win over every role's defaults, as in Ansible.
    """

    frames: tuple[dict, ...]
    roles: tuple[tuple[str, dict, dict], ...]

    def with_frame(self, frame: Mapping[str, Any]) -> Scope:
        return Scope((dict(frame), *self.frames), self.roles) if frame else self

    def with_role(self, role_path: str, role_vars: dict, defaults: dict) -> Scope:
        return Scope(self.frames, ((role_path, role_vars, defaults), *self.roles))

    def context(self) -> ChainMap:
        role_vars = [entry[1] for entry in self.roles]
        defaults = [entry[2] for entry in self.roles]
        return ChainMap(*self.frames, *role_vars, {"role_path": self.roles[0][0]}, *defaults)


class RoleReader:
    """Walk a role's tasks, following include_tasks and include_role, and collect what they install."""

    def __init__(self, root: Path = ROOT) -> None:
        self.root = root
        self.roles_dir = root / "roles"

    def role_dir(self, role: str) -> Path:
        path = self.roles_dir / role.removeprefix(f"{COLLECTION}.")
        if not (path / "tasks").is_dir():
            raise CheckError(f"role '{role}': no {_rel(path / 'tasks', self.root)} folder")
        return path

    def enter(self, role: str, scope: Scope) -> Scope:
        """The scope inside `role`: its vars/main.yml and defaults/main.yml join the caller's."""
        path = self.role_dir(role)
        role_vars = _load_yaml(path / "vars" / "main.yml") or {}
        defaults = _load_yaml(path / "defaults" / "main.yml") or {}
        return scope.with_role(str(path), role_vars, defaults)

    def read(self, role: str) -> list[Need]:
        name = role.removeprefix(f"{COLLECTION}.")
        return self._walk_file(name, name, "main.yml", self.enter(name, Scope((), ())), ())

    def _walk_file(self, owner: str, role: str, file: str, scope: Scope, when: tuple[str, ...]) -> list[Need]:
        path = self.role_dir(role) / "tasks" / file
        if not path.suffix:
            path = path.with_suffix(".yml")
        tasks = _load_yaml(path)
        if tasks is None:
            raise CheckError(f"role '{role}': {_rel(path, self.root)} is missing or empty")
        return self._walk_tasks(owner, role, path, tasks, scope, when)

    def _walk_tasks(
        self, owner: str, role: str, path: Path, tasks: list, scope: Scope, when: tuple[str, ...]
    ) -> list[Need]:
        needs: list[Need] = []
        for task in tasks or []:
            task_when = when + tuple(str(cond) for cond in _as_list(task.get("when")))
            task_scope = scope.with_frame(task.get("vars") or {})
            if "block" in task:
                for section in ("block", "rescue", "always"):
                    needs += self._walk_tasks(owner, role, path, task.get(section), task_scope, task_when)
                continue
            module, args = _module(task)
            if module is None:
                continue
            loop = None
            # A looped install (one apt task per exporter, say) is checked for every item.
            if module in INCLUDE_TASKS | INCLUDE_ROLE | APT_MODULES | PIP_MODULES:
                loop = _loop_items(task, Resolver(task_scope.context()))
            for binding in loop if loop is not None else [None]:
                bound = task_scope.with_frame(dict([binding])) if binding else task_scope
                needs += self._task(owner, role, path, module, args, bound, task_when)
        return needs

    def _task(
        self, owner: str, role: str, path: Path, module: str, args: Any, scope: Scope, when: tuple[str, ...]
    ) -> list[Need]:
        resolver = Resolver(scope.context())
        source = _rel(path, self.root)
        try:
            if module in INCLUDE_TASKS:
                file = resolver.render(args if isinstance(args, str) else args.get("file"))
                return self._walk_file(owner, role, str(file), scope, when)
            if module in INCLUDE_ROLE:
                included = str(resolver.render(args["name"])).removeprefix(f"{COLLECTION}.")
                tasks_from = str(resolver.render(args.get("tasks_from", "main.yml")))
                return self._walk_file(owner, included, tasks_from, self.enter(included, scope), when)
            if module in APT_MODULES | PIP_MODULES:
                kind = "apt" if module in APT_MODULES else "pip"
                args = args if isinstance(args, dict) else {"name": args}
                if kind == "pip" and args.get("requirements"):
                    raise CheckError("pip requirements files are not read by this check")
                raw = args.get("name", args.get("pkg", args.get("package")))
                return [
                    Need(kind, name, owner, source, when) for name in _flatten_names(resolver.render(raw))
                ]
            if (
                module in COPY_MODULES
                and isinstance(args, dict)
                and "pyproject.toml" in str(args.get("src", ""))
            ):
                project = Path(os.path.normpath(str(resolver.render(args["src"])))).parent
                return [Need("project", str(project), owner, source, when)]
        except CheckError as err:
            raise CheckError(f"{source}: {err}") from None
        return []


def _flatten_names(value: Any) -> list[str]:
    names: list[str] = []
    for item in _as_list(value):
        if isinstance(item, list | tuple):
            names += _flatten_names(list(item))
        elif item is not None:
            names += [part.strip() for part in str(item).split(",") if part.strip()]
    return names


def group_ancestors(root: Path, group: str) -> set[str]:
    """The group and every group above it in the repository's inventories (and `all`)."""
    found = {group, "all"}

    def walk(node: Any, path: tuple[str, ...]) -> None:
        for name, body in (node or {}).items():
            if name == group:
                found.update(path)
            walk((body or {}).get("children"), (*path, name))

    for hosts in sorted((root / "inventories").glob("*/hosts.yml")):
        walk(_load_yaml(hosts), ())
    return found


def _playbook_plays(path: Path, seen: set[Path]) -> list[dict]:
    if path in seen:
        return []
    seen.add(path)
    plays: list[dict] = []
    for play in _load_yaml(path) or []:
        target = play.get("ansible.builtin.import_playbook", play.get("import_playbook"))
        if target:
            plays += _playbook_plays((path.parent / target).resolve(), seen)
        else:
            plays.append(play)
    return plays


def roles_for_group(root: Path, group: str, playbook: str = "site.yml") -> list[str]:
    """Roles the plays of site.yml run on the group's hosts, in play order."""
    groups = group_ancestors(root, group)
    roles: list[str] = []
    for play in _playbook_plays((root / playbook).resolve(), set()):
        patterns = [p.strip() for p in re.split(r"[:,]", str(play.get("hosts", ""))) if p.strip()]
        if not any(p.lstrip("&") in groups for p in patterns if not p.startswith("!")):
            continue
        names = [e if isinstance(e, str) else e.get("role", e.get("name")) for e in play.get("roles") or []]
        for task in play.get("tasks") or []:
            spec = next((task[k] for k in ROLE_TASK_KEYS if isinstance(task.get(k), dict)), None)
            # A role imported for one group only (playbooks/engines.yml): when: ... in groups['x'].
            only = re.search(r"groups\[['\"]([\w-]+)['\"]\]", str(task.get("when", "")))
            if spec and (only is None or only.group(1) in groups):
                names.append(spec.get("name"))
        for name in names:
            name = str(name).removeprefix(f"{COLLECTION}.")
            if name not in roles:
                roles.append(name)
    return roles


ROLE_TASK_KEYS = (
    "ansible.builtin.import_role",
    "import_role",
    "ansible.builtin.include_role",
    "include_role",
)


# --- Python requirements --------------------------------------------------------------------


def platform_tags(arch: str, glibc: tuple[int, int] = GLIBC) -> list[str]:
    """pip --platform values for a glibc system: every manylinux tag up to its glibc.

    pip does not expand manylinux_2_X to the older tags itself, so each one is listed: a wheel
    tagged only manylinux_2_31_aarch64 installs on Debian 12 and must count.
    """
    first = 17 if arch == "aarch64" else 5  # aarch64 wheels start with manylinux2014 (glibc 2.17)
    tags = [f"manylinux2014_{arch}"]
    tags += [f"manylinux_{glibc[0]}_{minor}_{arch}" for minor in range(first, glibc[1] + 1)]
    return tags


def _manylinux_glibc(tag: str) -> tuple[int, int] | None:
    legacy = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
    prefix = tag.split("_", 1)[0]
    if prefix in legacy:
        return legacy[prefix]
    match = re.match(r"manylinux_(\d+)_(\d+)_", tag)
    return (int(match[1]), int(match[2])) if match else None


def wheel_verdict(filename: str, arch: str = "aarch64", glibc: tuple[int, int] = GLIBC) -> tuple[bool, str]:
    """Whether a downloaded file installs on a glibc `arch` node without building anything."""
    if not filename.endswith(".whl"):
        return False, "not a wheel: pip would build it from source"
    parts = filename[: -len(".whl")].split("-")
    if len(parts) < 5:
        return False, "not a wheel file name"
    platforms = parts[-1].split(".")
    if all(tag == "any" for tag in platforms):
        return True, "pure Python"
    for tag in platforms:
        needed = _manylinux_glibc(tag)
        if tag.endswith(f"_{arch}") and needed is not None and needed <= glibc:
            return True, f"{arch} ({tag})"
    if any(tag.startswith("musllinux") and tag.endswith(f"_{arch}") for tag in platforms):
        return False, f"musl only ({parts[-1]}): Debian's glibc cannot load it"
    return False, f"built for {parts[-1]}, not {arch} with glibc {glibc[0]}.{glibc[1]}"


@dataclass
class PipOutcome:
    """What one `pip download` run said."""

    returncode: int
    wheels: list[str] = field(default_factory=list)  # file names, in pip's order
    missing: str | None = None  # project pip found no usable file for
    requirement: str | None = None  # that requirement as pip printed it
    chain: str | None = None  # what asked for it ("litellm==1.0->foo"), None for a top-level pin
    versions: str | None = None  # the versions pip did find a usable file for
    network: str | None = None  # the line showing the index could not be reached
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0


_NOT_FOUND = re.compile(
    r"Could not find a version that satisfies the requirement (?P<req>.+?)"
    r"(?: \(from (?!versions:)(?P<chain>[^)]*)\))?(?: \(from versions: (?P<versions>[^)]*)\))?$"
)
_NETWORK = re.compile(
    r"NewConnectionError|ConnectTimeout|ReadTimeout|ProxyError|SSLError|Max retries exceeded|"
    r"Could not fetch URL|connection broken by|Temporary failure in name resolution|"
    r"Name or service not known|Network is unreachable|No route to host"
)


def canonical_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return re.sub(r"[-_.]+", "-", match[1]).lower() if match else requirement.strip().lower()


def parse_pip_output(returncode: int, output: str) -> PipOutcome:
    """Read pip's output: the files it resolved to, or the project it found nothing usable for."""
    outcome = PipOutcome(returncode)
    lines = output.splitlines()
    for index, line in enumerate(lines):
        text = line.strip()
        for prefix in ("Saved ", "File was already downloaded "):
            if text.startswith(prefix):
                outcome.wheels.append(Path(text[len(prefix) :].strip()).name)
        if text.startswith("ERROR:"):
            outcome.errors.append(text)
        if outcome.network is None and _NETWORK.search(text):
            outcome.network = text
        found = _NOT_FOUND.search(text)
        if found and outcome.missing is None:
            outcome.requirement = found["req"].strip()
            outcome.missing = canonical_name(outcome.requirement)
            outcome.chain = found["chain"]
            outcome.versions = found["versions"]
        if text.startswith("Additionally, some packages in these conflicts have no matching distributions"):
            following = [rest.strip() for rest in lines[index + 1 :]]
            names = following[: following.index("")] if "" in following else following
            if names and outcome.missing is None:
                outcome.missing = canonical_name(names[0])
                outcome.requirement = names[0]
    if outcome.ok:
        outcome.network = None  # a retried request that then succeeded
    return outcome


# Run before pip is imported: pip evaluates environment markers (`platform_machine == "x86_64"`)
# for the machine it runs on even with --platform (pypa/pip#11664), so the target's values are
# put where the marker code reads them.
_MARKER_SHIM = """\
import platform, sys
platform.machine = lambda: {machine!r}
platform.python_version = lambda: {python!r}
platform.python_version_tuple = lambda: tuple({python!r}.split("."))
"""
_PIP_MAIN = """\
from pip._internal.cli.main import main
sys.exit(main())
"""
# pip options that only say how to reach the index; every other PIP_* variable and every pip
# configuration file is dropped so that local wheel folders, extra indexes and constraints of
# this machine cannot make a pin look available on the node.
_PIP_ENV_KEPT = {
    "PIP_CERT",
    "PIP_CLIENT_CERT",
    "PIP_PROXY",
    "PIP_DEFAULT_TIMEOUT",
    "PIP_RETRIES",
    "PIP_TIMEOUT",
}


def pip_command(
    requirements: Iterable[str],
    dest: Path,
    arch: str = "aarch64",
    index_url: str = DEFAULT_INDEX_URL,
    find_links: Path | None = None,
    python: str = PYTHON_VERSION,
) -> list[str]:
    major_minor = "".join(python.split(".")[:2])
    shim = _MARKER_SHIM.format(machine=arch, python=python) + _PIP_MAIN
    command = [sys.executable, "-c", shim, "download", "--only-binary=:all:", "--index-url", index_url]
    command += ["--dest", str(dest), "--cache-dir", str(dest.parent / "pip")]
    for tag in platform_tags(arch):
        command += ["--platform", tag]
    command += ["--python-version", major_minor, "--implementation", "cp"]
    command += ["--abi", f"cp{major_minor}", "--abi", "abi3", "--abi", "none"]
    command += ["--progress-bar", "off", "--no-input", "--disable-pip-version-check", "--retries", "2"]
    if find_links is not None:
        command += ["--find-links", str(find_links)]
    return [*command, *requirements]


def pip_environment() -> dict[str, str]:
    env = {
        key: value for key, value in os.environ.items() if not key.startswith("PIP_") or key in _PIP_ENV_KEPT
    }
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def pip_download(
    requirements: list[str],
    cache: Path,
    arch: str = "aarch64",
    index_url: str = DEFAULT_INDEX_URL,
    find_links: Path | None = None,
) -> PipOutcome:
    dest = cache / f"wheels-cp{''.join(PYTHON_VERSION.split('.')[:2])}-{arch}"
    dest.mkdir(parents=True, exist_ok=True)
    command = pip_command(requirements, dest, arch, index_url, find_links)
    try:
        run = subprocess.run(
            command,
            env=pip_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
            timeout=PIP_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as err:
        raise NetworkError(f"pip download did not finish within {PIP_TIMEOUT_S} s") from err
    outcome = parse_pip_output(run.returncode, run.stdout)
    if not outcome.ok and outcome.network:
        raise NetworkError(f"pip could not reach {index_url}: {outcome.network}")
    return outcome


def explain(outcome: PipOutcome, arch: str) -> str:
    if outcome.missing:
        via = f" (needed by {outcome.chain})" if outcome.chain else ""
        versions = outcome.versions or "none"
        return f"no {arch} or pure-Python wheel for {outcome.requirement}{via}; versions with one: {versions}"
    return "pip failed: " + (" | ".join(outcome.errors[-3:]) or f"exit status {outcome.returncode}")


def read_project(path: Path) -> tuple[str, list[str], list[str]]:
    """A local project the roles copy to the node: (label, requirements, problems).

    pip builds it on the node, so it must compile nothing; its build requirements (fetched into
    pip's isolated build environment) and its dependencies must resolve like any pin.
    """
    pyproject = path / "pyproject.toml"
    if not pyproject.is_file():
        raise CheckError(f"{pyproject}: missing")
    data = tomllib.loads(pyproject.read_text())
    project = data.get("project", {})
    label = f"{project.get('name', path.name)} {project.get('version', '')}".strip()
    requirements = list(data.get("build-system", {}).get("requires", [])) + list(
        project.get("dependencies", [])
    )
    problems = []
    if (path / "setup.py").exists():
        problems.append("has a setup.py, which may compile extensions")
    setuptools = data.get("tool", {}).get("setuptools", {})
    if "ext-modules" in setuptools:
        problems.append("declares [tool.setuptools] ext-modules")
    wheres = setuptools.get("packages", {}).get("find", {}).get("where", ["."])
    files = [
        f
        for where in wheres
        for f in (path / where).rglob("*")
        if f.is_file() and "__pycache__" not in f.parts
    ]
    compiled = sorted(_rel(f, path) for f in files if f.suffix in EXTENSION_SUFFIXES)
    if compiled:
        problems.append("has extension sources: " + ", ".join(compiled[:5]))
    return label, requirements, problems


# --- Debian packages ------------------------------------------------------------------------


@dataclass
class DebIndex:
    """A Packages index: real packages (name -> (architecture, version)), the packages providing
    each virtual name, and each package's Depends and Pre-Depends as groups of alternatives."""

    packages: dict[str, tuple[str, str]]
    provides: dict[str, list[str]]
    depends: dict[str, list[list[str]]] = field(default_factory=dict)
    label: str = ""


def _dependency_groups(value: str) -> list[list[str]]:
    """'libc6 (>= 2.34), python3:any | python3-minimal' -> [['libc6'], ['python3', 'python3-minimal']]."""
    groups = []
    for group in value.split(","):
        names = [re.split(r"[\s(\[:]", alt.strip(), maxsplit=1)[0] for alt in group.split("|")]
        if any(names):
            groups.append([name for name in names if name])
    return groups


def parse_packages(text: str, label: str = "") -> DebIndex:
    index = DebIndex({}, {}, {}, label)
    stanza: dict[str, str] = {}
    for line in [*text.splitlines(), ""]:
        if line.strip():
            key, _colon, value = line.partition(": ")
            if key in ("Package", "Architecture", "Version", "Provides", "Depends", "Pre-Depends"):
                stanza[key] = value.strip()
            continue
        name = stanza.get("Package")
        if name and name not in index.packages:
            index.packages[name] = (stanza.get("Architecture", ""), stanza.get("Version", ""))
            for group in _dependency_groups(stanza.get("Provides", "")):
                index.provides.setdefault(group[0], []).append(name)
            depends = ", ".join(stanza[key] for key in ("Pre-Depends", "Depends") if key in stanza)
            if depends:
                index.depends[name] = _dependency_groups(depends)
        stanza = {}
    return index


def _real_package(name: str, index: DebIndex) -> str | None:
    """The package apt would install for a name: itself, or a package that provides it."""
    if name in index.packages:
        return name
    return next((p for p in index.provides.get(name, []) if p in index.packages), None)


def dependency_closure(name: str, index: DebIndex) -> tuple[int, list[str]]:
    """(packages it pulls in, unmet dependencies): every Depends or Pre-Depends group, followed to
    the end, must have an alternative in this index. Versions are not compared: a Debian release
    is consistent in itself, what differs between architectures is whether a package is built.
    An `Architecture: all` package is only checked for installability on amd64 by Debian, so its
    dependencies are where a missing arm64 build would hide.
    """
    start = _real_package(name, index)
    if start is None:
        return 0, [name]
    seen, queue, unmet = {start}, [(start, (start,))], []
    while queue:
        package, chain = queue.pop()
        for group in index.depends.get(package, []):
            chosen = next((real for real in (_real_package(alt, index) for alt in group) if real), None)
            if chosen is None:
                unmet.append(f"{' | '.join(group)} (needed by {' -> '.join(chain)})")
            elif chosen not in seen:
                seen.add(chosen)
                queue.append((chosen, (*chain, chosen)))
    return len(seen) - 1, unmet


def apt_verdict(name: str, index: DebIndex, deb_arch: str = "arm64") -> tuple[bool, str]:
    """Whether an apt `name:` entry installs on a `deb_arch` node from this index, dependencies included."""
    base = re.split(r"[=<>]", name, maxsplit=1)[0].strip().removesuffix(f":{deb_arch}")
    if any(char in base for char in "*?["):
        matches = sorted(n for n in index.packages if fnmatchcase(n, base))
        if not matches:
            return False, f"pattern matches nothing in {index.label}"
        return True, f"pattern: {', '.join(matches[:3])}"
    real = _real_package(base, index)
    if real is None:
        return False, f"not in {index.label}"
    arch, version = index.packages[real]
    if arch not in (deb_arch, "all"):
        return False, f"{real} is listed as {arch} in {index.label}"
    what = f"{deb_arch} build" if arch == deb_arch else "Architecture: all,"
    what = f"{what} {version}" if real == base else f"virtual, provided by {real} ({what} {version})"
    pulled, unmet = dependency_closure(real, index)
    if unmet:
        return False, f"{what}, but no {deb_arch} package for " + "; ".join(unmet[:3])
    return True, f"{what}; {pulled} dependencies, all there"


def _http_get(url: str, timeout: int = HTTP_TIMEOUT_S) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "aiswarm-arch-check"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        raise NetworkError(f"cannot reach {url}: {err}") from err


def _release_entry(release: str, path: str) -> tuple[str, int, str]:
    """(sha256, size, archive date) of `path` in a Release file."""
    date = next((line[5:].strip() for line in release.splitlines() if line.startswith("Date:")), "?")
    in_sha256 = False
    for line in release.splitlines():
        if not line.startswith(" "):
            in_sha256 = line.startswith("SHA256:")
            continue
        fields = line.split()
        if in_sha256 and len(fields) == 3 and fields[2] == path:
            return fields[0], int(fields[1]), date
    raise CheckError(f"the Release file does not list {path}")


def deb_index(mirror: str, suite: str, deb_arch: str, cache: Path, component: str = "main") -> DebIndex:
    """The suite's Packages index for deb_arch, downloaded again only when the Release says it changed."""
    base = mirror.rstrip("/")
    if suite.endswith("-security"):  # security updates live beside the main archive
        base = base.rsplit("/", 1)[0] + "/debian-security"
    relpath = f"{component}/binary-{deb_arch}/Packages.xz"
    release = _http_get(f"{base}/dists/{suite}/Release").decode("utf-8", "replace")
    sha256, size, date = _release_entry(release, relpath)
    host = urllib.parse.urlparse(base).netloc or "local"
    folder = cache / "debian" / host / suite / component / f"binary-{deb_arch}"
    folder.mkdir(parents=True, exist_ok=True)
    packages_xz, summary_file = folder / "Packages.xz", folder / "summary.json"
    label = f"{suite} {component} binary-{deb_arch} (Release of {date})"
    if summary_file.is_file():
        summary = json.loads(summary_file.read_text())
        if summary.get("sha256") == sha256 and summary.get("format") == SUMMARY_FORMAT:
            return DebIndex(summary["packages"], summary["provides"], summary["depends"], label)
    if not packages_xz.is_file() or hashlib.sha256(packages_xz.read_bytes()).hexdigest() != sha256:
        data = _http_get(f"{base}/dists/{suite}/{relpath}", timeout=300)
        if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
            raise CheckError(f"{base}/dists/{suite}/{relpath}: size or SHA-256 differs from the Release file")
        tmp = packages_xz.with_suffix(".xz.part")
        tmp.write_bytes(data)
        tmp.replace(packages_xz)
    index = parse_packages(lzma.decompress(packages_xz.read_bytes()).decode("utf-8", "replace"), label)
    summary = {
        "format": SUMMARY_FORMAT,
        "sha256": sha256,
        "url": f"{base}/dists/{suite}/{relpath}",
        "release_date": date,
        "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "packages": index.packages,
        "provides": index.provides,
        "depends": index.depends,
    }
    summary_file.write_text(json.dumps(summary))
    return index


# --- The check ------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """$AISWARM_ARCH_CACHE, else /var/cache/aiswarm/arch when writable, else ~/.cache/aiswarm/arch."""
    if os.environ.get("AISWARM_ARCH_CACHE"):
        return Path(os.environ["AISWARM_ARCH_CACHE"])
    shared = Path("/var/cache/aiswarm")
    if os.access(shared if shared.is_dir() else shared.parent, os.W_OK):
        return shared / "arch"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "aiswarm" / "arch"


class Report:
    def __init__(self) -> None:
        self.failures: list[str] = []

    def line(self, ok: bool, subject: str, verdict: str, origin: str = "") -> None:
        mark = "ok  " if ok else "FAIL"
        print(f"  {mark} {subject:<38} {verdict}" + (f"  [{origin}]" if origin else ""), flush=True)
        if not ok:
            self.failures.append(f"{subject}: {verdict}" + (f" [{origin}]" if origin else ""))


def check_pip(
    pins: list[tuple[str, str]], cache: Path, arch: str, index_url: str, report: Report, verbose: bool
) -> None:
    """pins: (requirement, where it comes from). One resolution of them all, as the node does."""
    requirements = [pin for pin, _origin in pins]
    outcome = pip_download(requirements, cache, arch, index_url)
    if outcome.ok:
        for pin, origin in pins:
            report.line(True, pin, "resolves to wheels only", origin)
    else:
        # pip stops at the first failure: each pin alone tells which of them have no arm64 build.
        alone_failed = False
        for pin, origin in pins:
            alone = outcome if len(pins) == 1 else pip_download([pin], cache, arch, index_url)
            alone_failed |= not alone.ok
            report.line(
                alone.ok, pin, "resolves to wheels only" if alone.ok else explain(alone, arch), origin
            )
        if not alone_failed:
            report.line(False, "the pins together", explain(outcome, arch))
        return
    verdicts = [(wheel, *wheel_verdict(wheel, arch)) for wheel in outcome.wheels]
    compiled = [v for v in verdicts if v[1] and v[2] != "pure Python"]
    pure = [v for v in verdicts if v[1] and v[2] == "pure Python"]
    print(f"  resolved to {len(verdicts)} wheels: {len(compiled)} built for {arch}, {len(pure)} pure Python")
    for wheel, ok, verdict in verdicts:
        if not ok or verbose or verdict != "pure Python":
            report.line(ok, wheel.split("-")[0] + " " + wheel.split("-")[1], verdict)
    if not outcome.wheels:
        report.line(False, "pip download", "named no file: cannot tell what it resolved to")


def check_apt(needs: list[Need], index: DebIndex, deb_arch: str, report: Report) -> None:
    by_name: dict[str, list[Need]] = {}
    for need in needs:
        by_name.setdefault(need.name, []).append(need)
    for name, sources in by_name.items():
        ok, verdict = apt_verdict(name, index, deb_arch)
        origin = "; ".join(dict.fromkeys(need.origin() for need in sources))
        report.line(ok, name, verdict, origin)


def _probe_wheel(folder: Path, requirement: str) -> str:
    """A pure wheel that depends on `requirement`: proves a dependency's missing build is caught."""
    name, version = "aiswarm_arch_probe", "1.0"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as wheel:
        wheel.writestr(f"{name}/__init__.py", "")
        metadata = f"Metadata-Version: 2.1\nName: aiswarm-arch-probe\nVersion: {version}\n"
        wheel.writestr(f"{info}/METADATA", metadata + f"Requires-Dist: {requirement}\n")
        wheel.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: check_arm64\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        wheel.writestr(f"{info}/RECORD", "")
    return f"aiswarm-arch-probe=={version}"


def _fails_naming(outcome: PipOutcome, pin: str) -> bool:
    return not outcome.ok and outcome.missing == canonical_name(pin)


def self_test(cache: Path, index_url: str, mirror: str, report: Report) -> None:
    """The same code on pins known to lack an arm64 build must fail, naming them; on x86_64 pass."""
    pin, source_pin = SELF_TEST_ARCH_PIN, SELF_TEST_SOURCE_PIN
    cases: list[tuple[str, bool, PipOutcome]] = []
    result = pip_download([pin], cache, "aarch64", index_url)
    cases.append((f"{pin} on aarch64", _fails_naming(result, pin), result))
    result = pip_download([pin], cache, "x86_64", index_url)
    x86_64 = result.ok and bool(result.wheels) and all(wheel_verdict(w, "x86_64")[0] for w in result.wheels)
    cases.append((f"{pin} on x86_64 (control)", x86_64, result))
    result = pip_download([source_pin], cache, "aarch64", index_url)
    cases.append((f"{source_pin} (an sdist only)", _fails_naming(result, source_pin), result))
    with tempfile.TemporaryDirectory() as links:
        probe = _probe_wheel(Path(links), pin)
        result = pip_download([probe], Path(links), "aarch64", index_url, Path(links))
    cases.append((f"a dependency of {probe}", _fails_naming(result, pin) and bool(result.chain), result))
    for subject, ok, result in cases:
        expected = "resolves" if "control" in subject else "fails"
        said = "resolves" if result.ok else explain(result, "aarch64")
        report.line(ok, subject, ("as expected: " if ok else f"expected it {expected}; ") + said)
    arm64 = deb_index(mirror, DEBIAN_SUITE, "arm64", cache)
    amd64 = deb_index(mirror, DEBIAN_SUITE, "amd64", cache)
    found, says = apt_verdict(SELF_TEST_DEB_PACKAGE, arm64, "arm64")
    report.line(not found, f"{SELF_TEST_DEB_PACKAGE} on arm64", f"expected missing: {says}")
    found, says = apt_verdict(SELF_TEST_DEB_PACKAGE, amd64, "amd64")
    report.line(found, f"{SELF_TEST_DEB_PACKAGE} on amd64 (control)", f"expected present: {says}")


def collect(root: Path, roles: list[str]) -> list[Need]:
    reader = RoleReader(root)
    return [need for role in roles for need in reader.read(role)]


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    root = Path(args.root).resolve()
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    deb_arch = DEBIAN_ARCH[args.arch]
    roles = args.role or roles_for_group(root, args.group)
    needs = collect(root, roles)
    print(
        f"arch: {args.group} roles {', '.join(roles)} on {args.arch} (Debian 12: CPython {PYTHON_VERSION}, "
        f"glibc {GLIBC[0]}.{GLIBC[1]}); cache {cache}"
    )
    # Fail loudly, before anything else, when either source cannot be reached.
    _http_get(f"{args.index_url.rstrip('/')}/pip/")
    _http_get(f"{args.deb_mirror.rstrip('/')}/dists/{DEBIAN_SUITE}/Release")
    report = Report()
    if not args.no_self_test:
        t0 = time.monotonic()
        print("self-test: pins without an arm64 build must fail")
        self_test(cache, args.index_url, args.deb_mirror, report)
        print(f"  ({time.monotonic() - t0:.1f} s)")
        if report.failures:
            print("arch: FAILED: the self-test shows the check cannot tell an arm64 build from none")
            return 1
    t0 = time.monotonic()
    pins = [(need.name, need.origin()) for need in needs if need.kind == "pip"]
    pins += [(pin, "command line: --requirement") for pin in args.requirement]
    projects = []
    for need in [need for need in needs if need.kind == "project"]:
        label, requirements, problems = read_project(Path(need.name))
        projects.append((label, problems, need))
        pins += [(pin, f"{label}: pyproject.toml") for pin in requirements]
    print(f"Python requirements ({len(pins)} pins; every dependency resolved for {args.arch}, wheels only):")
    for label, problems, need in projects:
        verdict = "; ".join(problems) or "pure Python (no extension sources), built on the node"
        report.line(not problems, label, verdict, need.origin())
    if pins:
        check_pip(pins, cache, args.arch, args.index_url, report, args.verbose)
    print(f"  ({time.monotonic() - t0:.1f} s)")
    t0 = time.monotonic()
    apt = [need for need in needs if need.kind == "apt"]
    apt += [Need("apt", name, "command line", "--package") for name in args.package]
    for suite in args.suite:
        index = deb_index(args.deb_mirror, suite, deb_arch, cache)
        print(f"Debian packages ({len(dict.fromkeys(n.name for n in apt))}) in {index.label}:")
        check_apt(apt, index, deb_arch, report)
    print(f"  ({time.monotonic() - t0:.1f} s)")
    elapsed = time.monotonic() - started
    if report.failures:
        print(f"arch: FAILED in {elapsed:.1f} s: {len(report.failures)} without an {args.arch} build:")
        for failure in report.failures:
            print(f"  {failure}")
        return 1
    print(
        f"arch: passed in {elapsed:.1f} s: {len(pins)} pins and {len(dict.fromkeys(n.name for n in apt))} "
        f"Debian packages of roles {', '.join(roles)} exist for {args.arch}"
    )
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--group", default="gateway", help="inventory group whose roles are checked")
    parser.add_argument("--role", action="append", default=[], help="check this role instead (repeatable)")
    parser.add_argument("--requirement", action="append", default=[], help="also check this pip pin")
    parser.add_argument("--package", action="append", default=[], help="also check this Debian package")
    parser.add_argument("--arch", default="aarch64", choices=sorted(DEBIAN_ARCH))
    parser.add_argument(
        "--suite", action="append", help=f"Debian suite(s) to look in (default {DEBIAN_SUITE})"
    )
    parser.add_argument("--index-url", default=DEFAULT_INDEX_URL, help="the package index (default PyPI)")
    parser.add_argument(
        "--deb-mirror", default=DEFAULT_DEB_MIRROR, help="Debian mirror (as lab/build-image.sh)"
    )
    parser.add_argument("--cache-dir", default=str(default_cache_dir()), help="downloads kept between runs")
    parser.add_argument("--root", default=str(ROOT), help=argparse.SUPPRESS)
    parser.add_argument("--no-self-test", action="store_true", help="skip the self-test (the negative cases)")
    parser.add_argument("-v", "--verbose", action="store_true", help="list the pure-Python wheels too")
    args = parser.parse_args(argv)
    args.suite = args.suite or [DEBIAN_SUITE]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except NetworkError as err:
        print(f"arch: FAILED: the network is needed and was not there: {err}", file=sys.stderr)
        print(
            "arch: this stage never passes offline; rerun it where PyPI and the Debian mirror answer",
            file=sys.stderr,
        )
        return 2
    except CheckError as err:
        print(f"arch: FAILED: cannot run the check: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

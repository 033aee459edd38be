"""What the deployment files say, read the way their tools read them: the compose file (PyYAML,
and `docker-compose config` for compose's own interpretation), the Dockerfiles (BuildKit's parser),
the repository's packages and their console scripts, and the settings class behind each entry point.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import dockerfile
import yaml
from pydantic_settings import BaseSettings

from rwasync.platform.settings import CommonSettings, ServiceSettings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
README = REPO / "README.md"
DOCKERFILES = sorted((REPO / "deploy" / "docker").glob("*.Dockerfile"))
CADDYFILE = REPO / "deploy" / "gateway" / "Caddyfile"
RABBITMQ_DEFINITIONS = REPO / "deploy" / "rabbitmq" / "definitions.json"
RENDER_DEFINITIONS = REPO / "deploy" / "rabbitmq" / "render-definitions.sh"
# The compose variables that have no default and must be set in .env (README, "Operations").
PASSWORDS = (
    "RWASYNC_POSTGRES_PASSWORD",
    "RWASYNC_RABBITMQ_PASSWORD",
    "RWASYNC_RABBITMQ_ADMIN_PASSWORD",
    "RWASYNC_GRAFANA_ADMIN_PASSWORD",
)
PROMETHEUS_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))


# --- the repository's packages ------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    """One installable package of the repository (a folder with a pyproject.toml)."""

    path: str  # relative to the repository, as a Dockerfile copies it
    name: str  # the distribution name
    dependencies: tuple[str, ...]  # requirement names, normalised, without versions
    modules: tuple[str, ...]  # the `rwasync.<x>` packages it ships

    def sources(self) -> list[Path]:
        return sorted((REPO / self.path / "src").rglob("*.py"))


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalise(re.split(r"[\s<>=!~;\[(]", requirement.strip(), maxsplit=1)[0])


@cache
def packages() -> dict[str, Package]:
    """Every package of the repository by distribution name."""
    found = {}
    for pyproject in sorted(REPO.glob("*/*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text())["project"]
        folder = pyproject.parent
        shipped = sorted((folder / "src" / "rwasync").iterdir())
        modules = tuple(f"rwasync.{p.name}" for p in shipped if p.is_dir())
        package = Package(
            path=str(folder.relative_to(REPO)),
            name=normalise(project["name"]),
            dependencies=tuple(requirement_name(r) for r in project.get("dependencies", [])),
            modules=modules,
        )
        found[package.name] = package
    return found


def local_closure(name: str) -> list[Package]:
    """The package and every repository package it needs, directly or not."""
    seen: dict[str, Package] = {}
    todo = [name]
    while todo:
        current = packages()[todo.pop()]
        if current.name not in seen:
            seen[current.name] = current
            todo.extend(d for d in current.dependencies if d in packages())
    return sorted(seen.values(), key=lambda p: p.path)


def imported_modules(source: Path) -> set[str]:
    """Absolute imports of a module, as dotted names."""
    names = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def console_scripts() -> dict[str, tuple[str, str]]:
    """Console script name -> (its distribution, its `module:function`)."""
    scripts = {}
    for entry in entry_points(group="console_scripts"):
        if entry.dist is not None and normalise(entry.dist.name) in packages():
            scripts[entry.name] = (normalise(entry.dist.name), entry.value)
    return scripts


def settings_class(console_script: str) -> type[BaseSettings]:
    """The settings class a console script's process reads: its package's `ServiceSettings`
    subclass (a service), else `CommonSettings` (the CLI)."""
    _, target = console_scripts()[console_script]
    package = ".".join(target.split(":")[0].split(".")[:2])
    try:
        module = importlib.import_module(f"{package}.settings")
    except ModuleNotFoundError:
        return CommonSettings
    classes = [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, ServiceSettings)
        and cls is not ServiceSettings
        and cls.__module__ == module.__name__
    ]
    assert len(classes) == 1, f"{module.__name__} must define one ServiceSettings subclass"
    return classes[0]


def env_names(settings: type[BaseSettings]) -> set[str]:
    """The environment variables a settings class reads."""
    prefix = settings.model_config.get("env_prefix", "")
    names = set()
    for name, field in settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, str):
            names.add(alias)
        elif alias is not None:
            names.add(str(alias.choices[0]))  # type: ignore[union-attr]
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def env_prefix(settings: type[BaseSettings]) -> str:
    return str(settings.model_config.get("env_prefix", ""))


# --- Dockerfiles ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    base: str
    name: str | None
    commands: tuple[dockerfile.Command, ...]

    def all(self, instruction: str) -> list[dockerfile.Command]:
        return [c for c in self.commands if c.cmd == instruction.upper()]


def stages(path: Path) -> list[Stage]:
    """A Dockerfile's build stages, in order, parsed by BuildKit's own parser."""
    found: list[Stage] = []
    current: list[dockerfile.Command] = []
    for command in dockerfile.parse_file(str(path)):
        if command.cmd == "FROM":
            current = []
            value = command.value
            name = value[2] if len(value) == 3 and value[1].upper() == "AS" else None
            found.append(Stage(value[0], name, ()))
        elif not found:
            raise AssertionError(f"{path.name}: {command.cmd} before FROM")
        current.append(command)
        found[-1] = Stage(found[-1].base, found[-1].name, tuple(current))
    return found


def entrypoint(path: Path) -> list[str]:
    """The exec-form ENTRYPOINT of the image's final stage."""
    commands = stages(path)[-1].all("ENTRYPOINT")
    assert commands, f"{path.name} has no ENTRYPOINT"
    assert commands[-1].json, f"{path.name}: ENTRYPOINT must be in exec (JSON) form"
    return list(commands[-1].value)


# --- the compose file -----------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    """The compose file as written (anchors merged, variables not interpolated)."""
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def compose_variables() -> set[str]:
    """Every variable the compose file interpolates (`${NAME}`, `${NAME:-default}`, ...)."""
    text = COMPOSE_FILE.read_text().replace("$$", "")
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))


def built_services() -> dict[str, Path]:
    """Compose services built from this repository -> their Dockerfile."""
    found = {}
    for name, service in compose()["services"].items():
        build = service.get("build")
        if build is not None:
            found[name] = REPO / build["context"] / build["dockerfile"]
    return found


def image_services() -> dict[str, Path]:
    """Compose services that run a repository image (built here or by another service)."""
    built = {compose()["services"][n]["image"]: path for n, path in built_services().items()}
    return {
        name: built[service["image"]]
        for name, service in compose()["services"].items()
        if service.get("image") in built
    }


def operations_commands() -> list[str]:
    """The shell lines of README.md's "Operations" section, in order."""
    text = README.read_text()
    start = text.index("\n## Operations\n")
    section = text[start : text.index("\n## ", start + 1)]
    return [
        line.strip()
        for block in re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
        for line in block.replace("\\\n", " ").splitlines()
        if line.strip()
    ]


def prepare_project(project: Path) -> None:
    """What README.md, "Operations", does before the first `docker compose` command (copy
    .env.example to .env, add the passwords), run by bash in `project`."""
    commands = operations_commands()
    first = next(i for i, c in enumerate(commands) if c.startswith("docker compose"))
    project.mkdir(parents=True, exist_ok=True)
    shutil.copy(ENV_EXAMPLE, project / ".env.example")
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(commands[:first])],
        cwd=project,
        check=True,
        timeout=60,
    )


def resolved_compose(project: Path) -> dict[str, Any]:
    """`docker-compose config` of the compose file run in `project` (with its `.env`, the file
    compose interpolates and every service's env_file): compose's own reading, with anchors
    merged, variables interpolated and each env_file folded into `environment`."""
    result = run_compose(project, "config")
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    resolved: dict[str, Any] = yaml.safe_load(result.stdout)
    return resolved


def run_compose(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Debian's docker-compose on the compose file, with `project` as its project directory
    (where it finds `.env`). Without a Docker engine only `config` can work."""
    return subprocess.run(
        [docker_compose(), "-f", str(COMPOSE_FILE), "--project-directory", str(project), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(project)},
    )


def docker_compose() -> str:
    """Debian's docker-compose (`make test` installs it through scripts/ensure-deploy-tools.sh)."""
    for candidate in ("/usr/bin/docker-compose", "/usr/local/bin/docker-compose"):
        if Path(candidate).exists():
            return candidate
    raise AssertionError(
        "docker-compose is not installed: run scripts/ensure-deploy-tools.sh (make test does)"
    )


def caddy() -> str:
    """The Caddy that scripts/ensure-deploy-tools.sh unpacks into the virtualenv."""
    unpacked = Path(sys.prefix) / "deploy-tools" / "caddy" / "usr" / "bin" / "caddy"
    found = str(unpacked) if unpacked.exists() else shutil.which("caddy")
    assert found, "caddy is not installed: run scripts/ensure-deploy-tools.sh (make test does)"
    return found


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL expression) of every query of every dashboard in deploy/grafana."""
    found = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                found.append((f"{path.name}: {panel['title']}", target["expr"]))
    return found


def queried_metrics(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: every `rwasync_…` word (label names and
    values never start with it)."""
    return set(re.findall(r"\b(rwasync_[a-z0-9_]+)", expr))


def env_example() -> dict[str, str]:
    """The active (uncommented) lines of .env.example: what `cp .env.example .env` sets."""
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            values[match.group(1)] = match.group(2)
    return values

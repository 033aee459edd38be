"""The Dockerfiles under deploy/docker: each builds one deployable from the repository's own
packages (installed with constraints.txt), runs as a non-root user on a base pinned by version,
and starts the same console script `make run` starts. Every package declares what it imports, so
an image that installs a package's declared dependencies has everything its entry point needs."""

from __future__ import annotations

import re
import sys
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path

import pytest

from tests.support.deployment import (
    DOCKERFILES,
    REPO,
    Package,
    console_scripts,
    entrypoint,
    imported_modules,
    local_closure,
    normalise,
    packages,
    requirement_name,
    stages,
)

pytestmark = pytest.mark.unit

# Postgres names a release with two numbers (16.6); the others with three (3.11.11, 4.0.5).
RELEASE_NUMBERS = {"postgres": 2}


def pinned(image: str) -> bool:
    """Whether an image reference names one release (a version tag, optionally a digest), not a
    moving tag such as `3.11`, `16` or `latest`."""
    name, _, tag = image.partition("@")[0].rpartition(":")
    numbers = RELEASE_NUMBERS.get(name.rsplit("/", 1)[-1], 3)
    release = rf"^v?\d+(\.\d+){{{numbers - 1}}}(-[a-z0-9.-]+)?$"
    return bool(name) and re.match(release, tag) is not None


ROOT_USERS = {"root", "0", "0:0", "root:root"}


def procfile_scripts() -> set[str]:
    """The console scripts `make run` starts (Procfile) and the one it migrates with."""
    started = set(re.findall(r"\.venv/bin/(rwasync[\w-]*)", (REPO / "Procfile").read_text()))
    migrate = set(re.findall(r"\$\(BIN\)/(rwasync) migrate", (REPO / "Makefile").read_text()))
    return started | migrate


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_every_stage_starts_from_a_base_pinned_by_version(path: Path) -> None:
    names = set()
    for stage in stages(path):
        assert stage.base in names or pinned(stage.base), (
            f"{path.name}: FROM {stage.base} is not pinned to a full version"
        )
        if stage.name:
            names.add(stage.name)
    assert len(stages(path)) >= 2, f"{path.name} must build in one stage and run in another"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_the_image_runs_as_a_numeric_non_root_user(path: Path) -> None:
    users = stages(path)[-1].all("USER")
    assert users, f"{path.name}: the final stage sets no USER (it would run as root)"
    user = users[-1].value[0]
    assert user not in ROOT_USERS
    # Numeric, so that Kubernetes can check runAsNonRoot without a passwd lookup.
    assert re.fullmatch(r"[1-9]\d*(:\d+)?", user), f"{path.name}: USER {user} is not numeric"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_the_entry_point_is_a_console_script_that_make_run_starts(path: Path) -> None:
    command = entrypoint(path)
    assert command[0] in console_scripts(), f"{path.name}: {command[0]} is no console script"
    assert command[0] in procfile_scripts(), f"{path.name}: make run never starts {command[0]}"


def installed_paths(path: Path) -> list[str]:
    """The repository folders the build stage installs with pip (and checks -c constraints.txt)."""
    runs = [r for s in stages(path)[:-1] for r in s.all("RUN") if "pip install" in r.value[0]]
    assert len(runs) == 1, f"{path.name}: one pip install in the build stage"
    words = runs[0].value[0].split()
    assert "constraints.txt" in words and words[words.index("constraints.txt") - 1] == "-c", (
        f"{path.name}: pip install must use -c constraints.txt (what CI tested)"
    )
    return sorted(w.removeprefix("./").rstrip("/") for w in words if w.startswith("./"))


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_the_build_installs_exactly_the_entry_points_package_and_its_libraries(path: Path) -> None:
    owner, _ = console_scripts()[entrypoint(path)[0]]
    needed = sorted(p.path for p in local_closure(owner))
    assert installed_paths(path) == needed
    copied = {
        c.value[0].rstrip("/") for s in stages(path)[:-1] for c in s.all("COPY") if not c.flags
    }
    assert {"constraints.txt", *needed} <= copied, f"{path.name} installs what it did not copy"
    for source in copied:
        assert (REPO / source).exists(), f"{path.name}: COPY {source} names nothing"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_the_final_stage_takes_only_the_built_environment(path: Path) -> None:
    final = stages(path)[-1]
    copies = final.all("COPY")
    assert copies and all(any(f.startswith("--from=") for f in c.flags) for c in copies), (
        f"{path.name}: the final stage copies only from the build stage (no sources, no tools)"
    )


def third_party_closure(names: list[str]) -> set[str]:
    """Distributions installed for these requirement names, following their requirements."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = normalise(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            continue
        # Optional extras (`; extra == ...`) are not installed by a plain requirement.
        todo.extend(requirement_name(r) for r in requires if "extra ==" not in r)
    return seen


def owner_of(module: str) -> str:
    """The repository package that ships `rwasync.<x>`."""
    top = ".".join(module.split(".")[:2])
    for package in packages().values():
        if top in package.modules:
            return package.name
    raise AssertionError(f"no package ships {top}")


@pytest.mark.parametrize("package", sorted(packages()), ids=str)
def test_every_import_is_provided_by_a_declared_dependency(package: str) -> None:
    """What a package imports comes with what it declares: an image installing only its
    declared dependencies (as the Dockerfiles do) can import every module it ships."""
    closure = local_closure(package)
    local = {p.name for p in closure}
    external = [d for p in closure for d in p.dependencies if d not in packages()]
    installed = third_party_closure(external)
    providers = packages_distributions()
    missing = []
    me: Package = packages()[package]
    for source in me.sources():
        for module in imported_modules(source):
            top = module.split(".")[0]
            if top in sys.stdlib_module_names or top == "__future__":
                continue
            if top == "rwasync":
                if owner_of(module) not in local:
                    missing.append(f"{source.relative_to(REPO)} imports {module}")
                continue
            if not {normalise(d) for d in providers.get(top, [])} & installed:
                missing.append(f"{source.relative_to(REPO)} imports {module}")
    assert not missing, f"{package} does not declare what provides:\n" + "\n".join(missing)


def test_every_process_make_run_starts_has_an_image() -> None:
    imaged = {entrypoint(path)[0] for path in DOCKERFILES}
    assert procfile_scripts() <= imaged, "a deployable make run starts has no Dockerfile"

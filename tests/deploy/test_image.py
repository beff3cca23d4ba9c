"""The image builds reproducibly (Dockerfile, requirements.lock), checked without a Docker engine.

The Dockerfile is parsed into its instructions: the base image is pinned by tag and digest, the
dependencies come from the lock (hashes required) in a layer before the code is copied, the code's
own install adds no dependency, and the process runs as a non-root user. The lock covers
pyproject.toml's dependencies and build requirements, and everything they need in turn.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
DIGEST = re.compile(r"^(?P<name>[a-z0-9./_-]+):(?P<tag>[A-Za-z0-9._-]+)@sha256:[0-9a-f]{64}$")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: comments dropped, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


DOCKERFILE = instructions((REPO / "Dockerfile").read_text())


def _index(predicate: object) -> int:
    hits = [i for i, step in enumerate(DOCKERFILE) if predicate(*step)]  # type: ignore[operator]
    assert hits, "no such instruction"
    return hits[0]


def test_the_base_image_is_pinned_by_tag_and_digest() -> None:
    bases = [args.split()[0] for keyword, args in DOCKERFILE if keyword == "FROM"]
    assert bases, "no FROM"
    for base in bases:
        match = DIGEST.match(base)
        assert match, f"FROM {base}: pin it as name:tag@sha256:<digest>"
        assert match["tag"] != "latest"
    python = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    final = DIGEST.match(bases[-1])
    tag_version = re.match(r"(\d+\.\d+)", final["tag"]) if final else None
    assert tag_version, f"FROM {bases[-1]}: the tag names the Python version"
    assert Version(tag_version[1] + ".0") in SpecifierSet(python)  # the image's Python is one pyproject allows
    assert f"Python {tag_version[1]}" in (REPO / "requirements.lock").read_text().splitlines()[0]


def test_dependencies_are_installed_from_the_lock_in_a_layer_before_the_code() -> None:
    copy_lock = _index(lambda k, a: k == "COPY" and "requirements.lock" in a)
    install_lock = _index(lambda k, a: k == "RUN" and "pip install" in a and "requirements.lock" in a)
    copy_code = _index(lambda k, a: k == "COPY" and re.search(r"(^|\s)exporter(/|\s)", a) is not None)
    assert copy_lock < install_lock < copy_code, DOCKERFILE
    assert "--require-hashes" in DOCKERFILE[install_lock][1]
    # Nothing that changes with the code (the package, the README, pyproject.toml) is copied before
    # the dependencies are installed: a code change must not invalidate their layer.
    for keyword, args in DOCKERFILE[:install_lock]:
        if keyword in ("COPY", "ADD"):
            assert args.split()[:-1] == ["requirements.lock"], f"{keyword} {args} before the dependencies"
    # Every later pip install installs no dependency of its own (they all come from the lock).
    for keyword, args in DOCKERFILE[install_lock + 1 :]:
        if keyword == "RUN" and "pip install" in args:
            assert "--no-deps" in args, f"RUN {args}: dependencies must come from the lock"


def test_the_process_runs_as_a_non_root_user() -> None:
    users = [(i, args) for i, (keyword, args) in enumerate(DOCKERFILE) if keyword == "USER"]
    assert users, "no USER"
    last, user = users[-1]
    name = user.split(":")[0]
    assert name not in ("root", "0") and (not name.isdigit() or int(name) >= 1000), user
    entry = _index(lambda k, _a: k in ("ENTRYPOINT", "CMD"))
    assert last < entry


def test_env_files_stay_out_of_git_and_the_build_context() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", ".env", ".env.production"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ignored.stdout.split() == [".env", ".env.production"], ignored
    patterns = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert ".env" in patterns and ".env.*" in patterns


def _locked() -> dict[str, tuple[Version, int]]:
    """name -> (version, number of hashes) of requirements.lock."""
    locked: dict[str, tuple[Version, int]] = {}
    name = ""
    for line in (REPO / "requirements.lock").read_text().splitlines():
        pin = re.match(r"^([A-Za-z0-9._-]+)==([^\s\\;]+)", line)
        if pin:
            name = canonicalize_name(pin[1])
            locked[name] = (Version(pin[2]), 0)
        elif line.strip().startswith("--hash=sha256:"):
            version, hashes = locked[name]
            locked[name] = (version, hashes + 1)
    return locked


def test_the_lock_pins_every_dependency_of_pyproject_with_hashes() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    locked = _locked()
    assert locked and all(hashes > 0 for _, hashes in locked.values()), "every pin needs its hashes"
    wanted = [*project["project"]["dependencies"], *project["build-system"]["requires"]]
    for text in wanted:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{text}: not in requirements.lock (run make lock)"
        assert requirement.specifier.contains(locked[name][0], prereleases=True), (
            f"{text}: requirements.lock pins {locked[name][0]} (run make lock)"
        )


def test_the_lock_is_closed_under_the_dependencies_of_what_it_pins() -> None:
    """What each pinned package requires (its installed metadata, markers for Linux and Python 3.11) is
    pinned too: ``pip install --require-hashes --no-deps`` would otherwise leave it out."""
    locked = _locked()
    environment: dict[str, str] = {str(key): str(value) for key, value in default_environment().items()}
    environment.update(sys_platform="linux", platform_system="Linux", python_version="3.11", extra="")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    todo = [Requirement(text) for text in project["project"]["dependencies"]]
    seen: set[str] = set()
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        assert name in locked, f"{requirement}: needed but not in requirements.lock (run make lock)"
        for text in metadata.requires(requirement.name) or []:
            needed = Requirement(text)
            if needed.marker is None or needed.marker.evaluate(environment):
                todo.append(needed)
    assert len(seen) > 10  # web3's tree at least: the walk really ran

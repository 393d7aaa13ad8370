"""Print the third-party requirements that pyproject.toml declares, one per line.

The Dockerfiles install these in a layer of their own, before the project's code is copied, so a
code change rebuilds in seconds instead of reinstalling every dependency. Extras that refer back to
the project itself (``lstm-nmt[serve]``) are expanded; an extra that pyproject does not define is
reported on stderr and skipped, so a build arg can name an extra before it exists (``train``).

Usage: python pyproject_deps.py [--extras serve,train] [--no-core] [--build-system] [PYPROJECT]
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path


def _name(requirement: str) -> str:
    """Return the normalised distribution name at the start of a PEP 508 requirement."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else ""


def requirements(
    pyproject: dict[str, object], extras: list[str], core: bool, build_system: bool
) -> list[str]:
    """Collect the requirements for the chosen extras.

    Args:
        pyproject: The parsed pyproject.toml.
        extras: Names of optional-dependency groups to include.
        core: Whether to include ``[project].dependencies``.
        build_system: Whether to include ``[build-system].requires`` (the project is then
            installed with ``--no-build-isolation``, offline and in seconds).

    Returns:
        Requirement strings in first-seen order, without duplicates or self-references.
    """
    project = pyproject["project"]
    assert isinstance(project, dict)
    own_name = _name(project["name"])
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    out: list[str] = []

    def add(reqs: list[str]) -> None:
        for req in reqs:
            if _name(req) == own_name:
                # "lstm-nmt[serve]" inside another extra: pull in that extra's requirements.
                inner = re.search(r"\[([^\]]*)\]", req)
                for extra in inner.group(1).split(",") if inner else []:
                    add(optional.get(extra.strip(), []))
            elif req not in out:
                out.append(req)

    if build_system:
        build = pyproject.get("build-system", {})
        assert isinstance(build, dict)
        add(list(build.get("requires", [])))
    if core:
        add(list(project.get("dependencies", [])))
    for extra in extras:
        if extra not in optional:
            sys.stderr.write(f"pyproject_deps: no extra named {extra!r} in pyproject; skipped\n")
            continue
        add(optional[extra])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject", nargs="?", default="pyproject.toml", type=Path)
    parser.add_argument("--extras", default="", help="comma-separated extras, e.g. serve,train")
    parser.add_argument("--no-core", action="store_true", help="leave out [project].dependencies")
    parser.add_argument("--build-system", action="store_true", help="add [build-system].requires")
    args = parser.parse_args()
    extras = [e.strip() for e in args.extras.split(",") if e.strip()]
    data = tomllib.loads(args.pyproject.read_text(encoding="utf-8"))
    for req in requirements(data, extras, core=not args.no_core, build_system=args.build_system):
        sys.stdout.write(req + "\n")


if __name__ == "__main__":
    main()

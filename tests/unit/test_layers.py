"""The import-linter contracts in pyproject stay complete: the contract that keeps backends on
the core's public names lists every private module of the core (a new one left out would be
importable from a backend without the linter noticing)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# Packages forbidden to backends whole (not module by module), or backends themselves.
EDGES = {"backends", "bench", "cli", "servers", "testing"}


def _contract(name_start: str) -> dict[str, Any]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (found,) = [c for c in config["contracts"] if c["name"].startswith(name_start)]
    return dict(found)


def test_every_private_core_module_is_forbidden_to_backends() -> None:
    forbidden = set(_contract("Backends import only public names")["forbidden_modules"])
    private = set()
    for path in (ROOT / "msstore").rglob("_*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[1] in EDGES or parts[-1] in ("__init__", "__main__"):
            continue
        private.add(".".join(parts))
    covered = {m for m in private if any(m == f or m.startswith(f + ".") for f in forbidden)}
    assert private - covered == set(), "private core modules a backend could import"


def test_every_core_package_is_in_a_layer() -> None:
    layers = _contract("Layers, top to bottom")["layers"]
    named = {m.strip() for layer in layers for m in layer.replace(":", "|").split("|")}
    packages = {
        f"msstore.{p.stem if p.is_file() else p.name}"
        for p in (ROOT / "msstore").iterdir()
        if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.stem[0] != "_")
    }
    packages.add("msstore.backends")
    assert packages - named == set(), "core modules no layer names"

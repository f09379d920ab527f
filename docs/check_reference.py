"""Check the built site's API reference: every public name (``__all__``) of every documented
module has its entry, and every public name, and every public method and property of every
public class (inherited ones included), has a docstring, its own or the one it inherits from the
protocol or base class it implements. Run after ``mkdocs build``:
``python docs/check_reference.py SITE_DIR``."""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import griffe

ROOT = Path(__file__).resolve().parent.parent


def _documented_modules() -> Iterator[tuple[Path, str]]:
    for page in sorted((ROOT / "docs" / "reference").glob("*.md")):
        module = re.search(r"^::: (\S+)$", page.read_text(), re.M)
        if module is not None:
            yield page, module.group(1)


def _bare(obj: Any) -> bool:
    return not (obj.docstring and obj.docstring.value.strip())


def undocumented() -> list[str]:
    """Public names, methods and properties with no docstring, as the docs see them."""
    extensions = griffe.load_extensions("griffe_inherited_docstrings")
    loader = griffe.GriffeLoader(extensions=extensions, search_paths=[str(ROOT)])
    package = loader.load("msstore")
    loader.resolve_aliases(implicit=False, external=False)
    found: list[str] = []
    for _, name in _documented_modules():
        module = package if name == "msstore" else package[name.removeprefix("msstore.")]
        for public in importlib.import_module(name).__all__:
            obj = module[public]
            obj = obj.final_target if obj.is_alias else obj
            if _bare(obj):
                found.append(f"{name}.{public}")
            if not obj.is_class:
                continue
            for member_name, found_member in obj.all_members.items():
                if member_name.startswith(("_", "test_")):  # private; conformance cases
                    continue
                member = found_member.final_target if found_member.is_alias else found_member
                if not str(member.path).startswith("msstore."):  # from a library
                    continue
                if (member.is_function or "property" in member.labels) and _bare(member):
                    found.append(f"{name}.{public}.{member_name}")
    return found


def main(site: Path) -> int:
    missing = []
    for page, name in _documented_modules():
        html = (site / "reference" / page.stem / "index.html").read_text()
        for public in importlib.import_module(name).__all__:
            if f'id="{name}.{public}"' not in html:
                missing.append(f"{name}.{public}")
    for name in missing:
        print(f"not in the API reference: {name}")
    bare = undocumented()
    for name in bare:
        print(f"no docstring: {name}")
    complete = not missing and not bare
    verdict = "every public name listed and documented" if complete else "incomplete"
    print(f"API reference: {verdict}")
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "site")))

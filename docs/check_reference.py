"""Check the built site's API reference: every public name (``__all__``) of every documented
module has its entry. Run after ``mkdocs build``: ``python docs/check_reference.py SITE_DIR``."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path


def main(site: Path) -> int:
    missing = []
    for page in sorted((Path(__file__).parent / "reference").glob("*.md")):
        module = re.search(r"^::: (\S+)$", page.read_text(), re.M)
        if module is None:
            continue
        name = module.group(1)
        html = (site / "reference" / page.stem / "index.html").read_text()
        for public in importlib.import_module(name).__all__:
            if f'id="{name}.{public}"' not in html:
                missing.append(f"{name}.{public}")
    for name in missing:
        print(f"not in the API reference: {name}")
    print(f"API reference: {'incomplete' if missing else 'every public name listed'}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "site")))

"""Where every benchmark leaves its result: ``<folder>/<stem>.json`` and ``.md``, the table printed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_report(folder: Path, stem: str, data: Any, markdown: str) -> None:
    """Write ``data`` as JSON (values JSON cannot hold as their ``str``) and the Markdown table
    beside it, creating ``folder``; print the table."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps(data, indent=2, default=str))
    (folder / f"{stem}.md").write_text(markdown)
    print(markdown)

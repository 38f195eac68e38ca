"""What every benchmark script does with its result: optionally write it as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_json(path: str | None, result: dict[str, Any]) -> None:
    """Write ``result`` to ``path`` (parents created) and say so; nothing when ``path`` is None."""
    if not path:
        return
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")

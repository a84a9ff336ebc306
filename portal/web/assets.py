"""The built Vite entry (script + stylesheets) from ``frontend/dist/.vite/manifest.json``."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.templatetags.static import static

ENTRY = "src/main.js"


def manifest_path() -> Path:
    return Path(settings.BASE_DIR) / "frontend" / "dist" / ".vite" / "manifest.json"


@lru_cache(maxsize=4)
def _read(path: str, mtime: float) -> dict:
    return json.loads(Path(path).read_text())


def entry_assets() -> dict | None:
    """``{"script": url, "styles": [url, ...]}`` or None when the frontend has not been built."""
    path = manifest_path()
    if not path.is_file():
        return None
    manifest = _read(str(path), path.stat().st_mtime)
    entry = manifest.get(ENTRY)
    if not entry:
        return None
    return {"script": static(entry["file"]), "styles": [static(css) for css in entry.get("css", [])]}

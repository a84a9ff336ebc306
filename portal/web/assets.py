"""The built Vite entries (script + stylesheets) from ``frontend/dist/.vite/manifest.json``."""
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


def entry_assets(entry: str = ENTRY) -> dict | None:
    """``{"script": url, "styles": [url, ...]}`` for a Vite entry (``src/main.js`` or ``src/scoring_page.js``),
    or None when the frontend has not been built. Entries share chunks (the viewer); a shared chunk's
    stylesheet is listed under that chunk in the manifest, so the imports are walked for CSS too."""
    path = manifest_path()
    if not path.is_file():
        return None
    manifest = _read(str(path), path.stat().st_mtime)
    if entry not in manifest:
        return None
    styles: list[str] = []
    seen: set[str] = set()

    def collect(key: str) -> None:
        if key in seen or key not in manifest:
            return
        seen.add(key)
        chunk = manifest[key]
        for name in chunk.get("imports", []):
            collect(name)
        styles.extend(css for css in chunk.get("css", []) if css not in styles)

    collect(entry)
    return {"script": static(manifest[entry]["file"]), "styles": [static(css) for css in styles]}

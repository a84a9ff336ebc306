"""The coordinators' rubric-set page without code: rows of criterion fields in a form → the rubric spec that
``services.create_rubric_set`` validates and stores as a new version (same name → version + 1).

Only form handling lives here; validation (named fields such as ``criteria[2].steps``) stays in ``rubrics``.
"""
from __future__ import annotations

CANCER_TYPES = (("breast", "Breast"), ("prostate", "Prostate"), ("head_neck", "Head and neck"))
FIELDS = ("key", "label", "description", "examples", "max_score", "steps")
BLANK_ROWS = 3  # empty criterion rows offered below the filled ones; more rows come by saving a new version


def rows_from_rubric(rubric) -> list[dict]:
    """Criterion rows pre-filled from an existing set (the starting point of its next version)."""
    return [{"key": c.key, "label": c.label, "description": c.description, "examples": c.examples,
             "max_score": format(c.max_score.normalize(), "f"), "steps": ", ".join(c.steps)}
            for c in rubric.criteria.all()]


def form_rows(filled: list[dict]) -> list[dict]:
    return [dict(r, index=i) for i, r in enumerate(filled + [dict.fromkeys(FIELDS, "")] * BLANK_ROWS)]


def posted_rows(post) -> list[dict]:
    """Criterion rows as posted (``criterion-<i>-<field>``), blank rows dropped, order kept."""
    indices = sorted({int(k.split("-")[1]) for k in post if k.startswith("criterion-") and k.split("-")[1].isdigit()})
    rows = []
    for i in indices:
        row = {f: (post.get(f"criterion-{i}-{f}") or "").strip() for f in FIELDS}
        if any(row.values()):
            rows.append(row)
    return rows


def spec_from_form(post) -> tuple[dict, list[dict]]:
    """``(spec for create_rubric_set, the non-blank rows)``; steps are typed as "0, 0.5, 1"."""
    rows = posted_rows(post)
    criteria = []
    for row in rows:
        steps = [s.strip() for s in row["steps"].replace(";", ",").split(",") if s.strip()]
        criteria.append({"key": row["key"], "label": row["label"], "description": row["description"],
                         "examples": row["examples"], "max_score": row["max_score"] or None, "steps": steps})
    spec = {"name": (post.get("name") or "").strip(), "cancer_type": post.get("cancer_type") or "",
            "description": (post.get("description") or "").strip(), "criteria": criteria}
    return spec, rows


def check_cancer_type(value: str) -> dict[str, str]:
    allowed = [c for c, _ in CANCER_TYPES]
    return {} if value in allowed else {"cancer_type": f"choose one of {', '.join(allowed)}"}

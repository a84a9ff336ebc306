"""Seed a blinded reading study into a live portal (run inside its child environment, after
``live_portal seed``): a rater account and three items on the seeded case — the ground truth and two
altered copies of it (shifted, eroded) standing in for model outputs — in the LLMSeg breast rubric.

``python -m tests.browser.reading_seed`` prints JSON: rater credentials, study id.
``python -m tests.browser.reading_seed stored STUDY_ID`` prints what the database holds for that study's
rater items (position, status, scores, submitted or not), so the browser test checks the rows themselves
and not only what the API reports.
"""
from __future__ import annotations

import json

RATER = "oncologist1"
RATER_PASSWORD = "browser-rater-pass-5531"


def seed() -> dict:
    import django

    django.setup()
    import numpy as np
    from scipy import ndimage

    from portal.accounts.models import Site
    from portal.accounts.services import create_account
    from portal.cases.models import Case
    from portal.imaging import storage
    from portal.reading.models import RubricSet
    from portal.reading.services import ContourSource, create_reading_study, ensure_default_rubric_sets, open_study

    ensure_default_rubric_sets()
    site = Site.objects.get(code="internal")
    rater = create_account(RATER, RATER_PASSWORD, "oncologist", ["internal"])
    case = Case.objects.select_related("ct_series", "ground_truth").get(label="STS-002")
    truth = storage.load_mask(case.ground_truth.mask_path)
    variants = {"reference-copy": truth, "shifted": np.roll(truth, 6, axis=2),
                "eroded": ndimage.binary_erosion(truth, iterations=2)}
    sources = []
    for label, mask in variants.items():
        path = storage.mask_relpath(case.ct_series.series_uid, f"reading-{label}")
        storage.save_mask(path, mask)
        sources.append(ContourSource(case=case, source_label=label, mask_path=path, source_ref=f"browser-{label}"))
    rubric = RubricSet.objects.get(name="LLMSeg breast", version=1)
    study = create_reading_study(name="Browser blinded read", site=site, rubric_set=rubric, sources=sources,
                                 raters=[rater], show_reference=True, seed=77)
    open_study(study)
    return {"rater": RATER, "password": RATER_PASSWORD, "study": study.pk}


def stored(study_id: int) -> list[dict]:
    import django

    django.setup()
    from portal.reading.models import RaterItem

    rows = RaterItem.objects.filter(assignment__study_id=study_id).order_by("assignment__rater_id", "position")
    return [{"rater": r.assignment.rater.username, "position": r.position, "status": r.status, "scores": r.scores,
             "comment": r.comment, "submitted": r.submitted_at is not None} for r in rows.select_related("assignment__rater")]


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["stored"]:
        print(json.dumps(stored(int(sys.argv[2]))))
    else:
        print(json.dumps(seed()))

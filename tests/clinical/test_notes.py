"""clinical.notes: context extraction from free text, and PHI masking."""
from __future__ import annotations

import numpy as np
import pytest

from clinical import ContextValidationError
from clinical.notes import extract_context, mask_phi
from fixtures.contexts import sample_context
from fixtures.notes_templates import write_note
from fixtures.sites import SITES


@pytest.mark.parametrize("cancer_type", ["breast", "prostate"])
def test_every_fixture_note_yields_its_context(cancer_type):
    for i in range(150):
        rng = np.random.default_rng(1000 + i)
        context = sample_context(cancer_type, list(SITES.values())[i % 3], rng)
        note, identity = write_note(cancer_type, context, rng)
        assert extract_context(cancer_type, note) == context, note
        masked = mask_phi(note)
        for secret in (identity["mrn"], identity["note_date"], identity["patient_name"].split()[1]):
            assert secret not in masked, (secret, masked)


@pytest.mark.parametrize("text,expected", [
    ("Lt. breast IDC, s/p BCS, pT1c pN0(sn)", {"laterality": "left", "surgery": "bcs", "pT": "T1c", "pN": "N0",
                                                "pathology": "IDC"}),
    ("left-sided breast cancer after lumpectomy", {"laterality": "left", "surgery": "bcs"}),
    ("Breast, Rt. - MRM, pN1a", {"laterality": "right", "surgery": "mastectomy", "pN": "N1a"}),
    ("right breast, modified radical mastectomy, ypT0 ypN0 after NAC",
     {"laterality": "right", "surgery": "mastectomy", "pT": "T0", "pN": "N0", "neoadjuvant_chemo": True}),
    ("cT2N1M0 RIGHT breast ILC, wide local excision", {"laterality": "right", "surgery": "bcs", "cT": "T2",
                                                        "cN": "N1", "cM": "M0", "pathology": "ILC"}),
    ("partial mastectomy of the left breast", {"laterality": "left", "surgery": "bcs"}),
    ("bilateral breast cancer, bilateral simple mastectomy", {"laterality": "bilateral", "surgery": "mastectomy"}),
    ("58 yo F, DCIS of the left breast, cTis N0, no neoadjuvant chemotherapy",
     {"age": 58, "pathology": "DCIS", "laterality": "left", "cT": "Tis", "cN": "N0", "neoadjuvant_chemo": False}),
])
def test_breast_phrasings(text, expected):
    assert extract_context("breast", text) == expected


@pytest.mark.parametrize("text,expected", [
    ("PSA 12.4 ng/ml, Gleason 4+3=7, cT2b", {"psa": 12.4, "gleason_primary": 4, "gleason_secondary": 3,
                                             "isup_grade_group": 3, "t_stage": "T2b"}),
    ("Gleason score 8 (4+4), iPSA 31, T3a, SVI absent, age 81",
     {"gleason_primary": 4, "gleason_secondary": 4, "isup_grade_group": 4, "psa": 31.0, "t_stage": "T3a",
      "sv_invasion": False, "age": 81}),
    ("s/p RALP, pT3b (seminal vesicle invasion), referred for salvage RT",
     {"prostatectomy": True, "t_stage": "T3b", "sv_invasion": True, "rt_aim": "salvage"}),
    ("intact prostate, definitive radiotherapy", {"prostatectomy": False, "rt_aim": "definitive"}),
])
def test_prostate_phrasings(text, expected):
    assert extract_context("prostate", text) == expected


def test_nothing_found_gives_empty_context_and_unknown_type_is_named():
    assert extract_context("breast", "Patient seen in clinic today.") == {}
    with pytest.raises(ContextValidationError) as err:
        extract_context("lung", "left lung")
    assert "cancer_type" in err.value.errors


def test_mask_phi_masks_names_dates_ids_but_keeps_clinical_numbers():
    note = ("Patient: Mrs. Helen Okafor   MRN: 1234567   Date: 03/04/2025\n"
            "Seen 12 March 2024 and on 2024-05-06 (Unit No. 7654321, hospital number 99887766). "
            "Dr. Tanaka agrees. PSA 12.4 ng/ml, Gleason 4+3=7, cT2N1M0, 52-year-old.")
    masked = mask_phi(note)
    for secret in ("Helen", "Okafor", "1234567", "03/04/2025", "12 March 2024", "2024-05-06", "7654321",
                   "99887766", "Tanaka"):
        assert secret not in masked, secret
    for kept in ("PSA 12.4 ng/ml", "Gleason 4+3=7", "cT2N1M0", "52-year-old"):
        assert kept in masked
    assert "[NAME]" in masked and "[DATE]" in masked and "[ID]" in masked

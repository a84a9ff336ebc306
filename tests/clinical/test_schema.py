import pytest

from clinical import ContextValidationError, nccn_risk_group, render_prompt, validate_context


def test_breast_prompt_matches_llmseg_form():
    ctx = {"laterality": "left", "surgery": "bcs", "cT": "T2", "pN": "N1", "age": 54}
    assert render_prompt("breast", ctx) == "N1, cT2, breast conserving surgery, left side"


def test_breast_prompt_shows_the_stage_the_nodes_depend_on():
    base = {"laterality": "left", "surgery": "bcs", "cT": "T2"}
    # pathological N when known ...
    assert render_prompt("breast", dict(base, cN="N1", pN="N1a")).startswith("N1a, ")
    assert render_prompt("breast", dict(base, cN="N0", pN="N0")).startswith("N0, ")
    # ... but a positive clinical N outranks ypN0 after neoadjuvant chemotherapy (the nodes stay in the CTV)
    assert render_prompt("breast", dict(base, cN="N1", pN="N0", neoadjuvant_chemo=True)).startswith("N1, ")
    assert render_prompt("breast", dict(base, cN="N2a", pN="NX")).startswith("N2a, ")
    # a pT3 found at surgery outranks an earlier cT2
    assert render_prompt("breast", dict(base, cN="N0", pT="T3")) == "N0, pT3, breast conserving surgery, left side"
    assert render_prompt("breast", dict(base, cN="N0", pT="T1c")) == "N0, cT2, breast conserving surgery, left side"


def test_missing_fields_are_left_out_never_nan():
    text = render_prompt("breast", {"laterality": "right", "surgery": "mastectomy", "cN": "nan"})
    assert text == "total mastectomy, right side"
    assert "nan" not in text.lower()


def test_omission_drops_component():
    ctx = {"laterality": "left", "surgery": "bcs", "cT": "T2", "cN": "N0"}
    assert render_prompt("breast", ctx, omit=("laterality",)) == "N0, cT2, breast conserving surgery"
    assert render_prompt("breast", ctx, omit=("N",)) == "cT2, breast conserving surgery, left side"


def test_invalid_values_name_the_field():
    with pytest.raises(ContextValidationError) as err:
        validate_context("breast", {"laterality": "up", "age": 5, "colour": "red"})
    assert set(err.value.errors) == {"laterality", "age", "colour"}


def test_gleason_derives_grade_group_and_rejects_contradiction():
    clean = validate_context("prostate", {"gleason_primary": 4, "gleason_secondary": 3})
    assert clean["isup_grade_group"] == 3
    with pytest.raises(ContextValidationError) as err:
        validate_context("prostate", {"gleason_primary": 3, "gleason_secondary": 3, "isup_grade_group": 4})
    assert "isup_grade_group" in err.value.errors


@pytest.mark.parametrize(
    "ctx,expected",
    [
        ({"t_stage": "T1c", "psa": 5, "isup_grade_group": 1}, "low"),
        ({"t_stage": "T2b", "psa": 5, "isup_grade_group": 1}, "intermediate"),
        ({"t_stage": "T1c", "psa": 15, "isup_grade_group": 1}, "intermediate"),
        ({"t_stage": "T3a", "psa": 5, "isup_grade_group": 1}, "high"),
        ({"t_stage": "T1c", "psa": 25, "isup_grade_group": 2}, "high"),
        ({"t_stage": "T3b", "psa": 5, "isup_grade_group": 1}, "very_high"),
        ({"t_stage": "T3a", "psa": 25, "isup_grade_group": 4}, "very_high"),
        ({"t_stage": "T1c", "psa": 5}, None),
    ],
)
def test_nccn_risk(ctx, expected):
    assert nccn_risk_group(ctx) == expected

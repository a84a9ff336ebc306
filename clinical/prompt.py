"""Render a clinical context to the text the language model reads.

Breast follows LLMSeg's prompt, e.g. ``N1, cT2, breast conserving surgery, left side``.
A missing field is left out (never rendered as "Nnan"); that is how the
component-omission study removes a component.
"""
from __future__ import annotations

from clinical.risk import n_stage_positive, nccn_risk_group, t_stage_advanced
from clinical.schema import validate_context

_SURGERY_TEXT = {"bcs": "breast conserving surgery", "mastectomy": "total mastectomy"}
_SIDE_TEXT = {"left": "left side", "right": "right side", "bilateral": "bilateral"}


def breast_n_stage(context: dict) -> str | None:
    """The one N stage the prompt shows: the pathological N when known (post-operative setting), else the
    clinical N, except that a positive clinical N outranks a negative pathological one.

    After neoadjuvant chemotherapy a cN1 often becomes ypN0, and the regional nodes are still treated
    (the CTV rules read "any recorded N stage positive"); showing "N0" there would tell the model the
    opposite of its target, and a trainee's "what if cN1" edit would not reach the text.
    """
    clinical, pathological = context.get("cN"), context.get("pN")
    if n_stage_positive(clinical) and not n_stage_positive(pathological):
        return clinical
    return pathological or clinical


def breast_t_stage(context: dict) -> tuple[str, str] | None:
    """("c", cT) when known, else ("p", pT); a T3/T4 pathological stage outranks an earlier clinical one,
    since an advanced primary by either record brings in the nodes."""
    clinical, pathological = context.get("cT"), context.get("pT")
    if clinical and not (t_stage_advanced(pathological) and not t_stage_advanced(clinical)):
        return "c", clinical
    if pathological:
        return "p", pathological
    return None


def _render_breast(ctx: dict) -> list[str]:
    parts = []
    n = breast_n_stage(ctx)
    if n:
        parts.append(n)
    t = breast_t_stage(ctx)
    if t:
        parts.append(f"{t[0]}{t[1]}")
    if ctx.get("surgery"):
        parts.append(_SURGERY_TEXT[ctx["surgery"]])
    if ctx.get("laterality"):
        parts.append(_SIDE_TEXT[ctx["laterality"]])
    return parts


def _render_prostate(ctx: dict) -> list[str]:
    parts = []
    if ctx.get("t_stage"):
        parts.append(f"c{ctx['t_stage']}")
    if ctx.get("psa") is not None:
        parts.append(f"PSA {ctx['psa']:g}")
    if ctx.get("gleason_primary") is not None:
        parts.append(f"Gleason {ctx['gleason_primary']}+{ctx['gleason_secondary']}")
    elif ctx.get("isup_grade_group") is not None:
        parts.append(f"ISUP grade group {ctx['isup_grade_group']}")
    risk = nccn_risk_group(ctx)
    if risk:
        parts.append(f"NCCN {risk.replace('_', ' ')} risk")
    if ctx.get("sv_invasion") is not None:
        parts.append("seminal vesicle invasion" if ctx["sv_invasion"] else "no seminal vesicle invasion")
    if ctx.get("prostatectomy") is not None:
        parts.append("post-prostatectomy" if ctx["prostatectomy"] else "intact prostate")
    if ctx.get("age") is not None:
        parts.append(f"age {ctx['age']}")
    if ctx.get("rt_aim"):
        parts.append(f"{ctx['rt_aim']} RT")
    return parts


def _render_head_neck(ctx: dict) -> list[str]:
    parts = []
    for key in ("T", "N", "M"):
        if ctx.get(key):
            parts.append(ctx[key])
    if ctx.get("stage"):
        parts.append(f"stage {ctx['stage']}")
    if ctx.get("subsite"):
        parts.append(ctx["subsite"].replace("_", " "))
    if ctx.get("pathology"):
        parts.append(ctx["pathology"])
    if ctx.get("chemotherapy") is not None:
        parts.append("concurrent chemotherapy" if ctx["chemotherapy"] else "no chemotherapy")
    if ctx.get("rt_aim"):
        parts.append(f"{ctx['rt_aim']} RT")
    return parts


_RENDERERS = {"breast": _render_breast, "prostate": _render_prostate, "head_neck": _render_head_neck}


def render_prompt(cancer_type: str, context: dict, *, omit: tuple[str, ...] = ()) -> str:
    """Validated context -> prompt text. ``omit`` drops fields first (component omission).

    For breast, omitting ``"N"`` or ``"T"`` drops both the clinical and pathological stage.
    """
    ctx = omit_fields(cancer_type, validate_context(cancer_type, context), omit)
    return ", ".join(_RENDERERS[cancer_type](ctx))


def omit_fields(cancer_type: str, context: dict, omit: tuple[str, ...] = ()) -> dict:
    """``context`` without the omitted components (breast "N" / "T" cover clinical and pathological)."""
    expanded = set(omit)
    if cancer_type == "breast":
        if "N" in expanded:
            expanded |= {"cN", "pN"}
        if "T" in expanded:
            expanded |= {"cT", "pT"}
    return {k: v for k, v in context.items() if k not in expanded}

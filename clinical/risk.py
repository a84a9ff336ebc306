"""Staging facts the CTV rules and the prompt share: NCCN prostate risk groups (NCCN Guidelines,
prostate cancer, initial risk stratification) and which breast T / N stages bring in the nodes.

Simplified to the fields the context holds: biopsy core counts and PSA density are
not recorded, so "very low" is reported as "low".
"""
from __future__ import annotations

HIGH_RISK_GROUPS = ("high", "very_high")


def n_stage_positive(stage: str | None) -> bool:
    """A recorded N stage other than N0 / NX (N1mi counts: it is a positive node)."""
    return bool(stage) and stage not in ("N0", "NX")


def t_stage_advanced(stage: str | None) -> bool:
    """T3 or T4 (any subdivision)."""
    return bool(stage) and stage.startswith(("T3", "T4"))


def nccn_risk_group(context: dict) -> str | None:
    """Return 'low' | 'intermediate' | 'high' | 'very_high', or None when T, PSA or grade is missing."""
    t = context.get("t_stage")
    psa = context.get("psa")
    gg = context.get("isup_grade_group")
    primary = context.get("gleason_primary")
    if t is None or psa is None or gg is None:
        return None
    high_features = sum([t == "T3a", gg >= 4, psa > 20])
    if t in ("T3b", "T4") or primary == 5 or high_features >= 2:
        return "very_high"
    if high_features == 1 or t == "T3":
        return "high"
    if t in ("T2b", "T2c") or gg in (2, 3) or 10 <= psa <= 20:
        return "intermediate"
    return "low"

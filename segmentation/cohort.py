"""Synthetic cases for training and evaluation, drawn from fixtures/ (generate_case / ctv_for).

Kept apart from training so tests and the claims bench share one way to pick cases by split/site.
"""
from __future__ import annotations


def generate_cases(cancer_type: str, site: str, split: str | None, count: int, *, seed: int = 0,
                   shape=None, start_index: int = 0, max_scan: int = 2000) -> list:
    """The first ``count`` cases of ``site`` whose split is ``split`` (None: any split)."""
    from fixtures import generate_case

    cases, index = [], start_index
    while len(cases) < count and index < start_index + max_scan:
        case = generate_case(cancer_type=cancer_type, site=site, index=index, seed=seed, shape=shape)
        if split is None or case.split == split:
            cases.append(case)
        index += 1
    if len(cases) < count:
        raise ValueError(f"cohort: only {len(cases)} {site}/{split} cases found in {max_scan} indices")
    return cases


def counterfactual_mask(case, context):
    from fixtures import ctv_for

    return ctv_for(case, context)

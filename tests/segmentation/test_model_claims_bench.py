"""bench/model_claims.py on one held-out case per site: it runs for both cancer types on the shipped
checkpoints, prints a row per claim and the `claims held` line, and its exit status and JSON agree."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("model_claims", ROOT / "bench" / "model_claims.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("cancer_type, n_claims", [("breast", 15), ("prostate", 7)])
def test_bench_prints_every_claim_and_an_exit_status_that_matches(cancer_type, n_claims, tmp_path, capsys):
    out = tmp_path / "claims.json"
    status = _bench().main(["--cancer-type", cancer_type, "--per-site", "1", "--timing-cases", "1",
                            "--timing-shape", "192", "--omission-cases", "3", "--json", str(out)])
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    claims = data["claims"]
    held = sum(c["held"] for c in claims)
    assert len(claims) == n_claims
    assert printed.strip().splitlines()[-1] == f"claims held: {held} of {n_claims}"
    assert status == (0 if held == n_claims else 1)
    assert set(data["numbers"]["per_site"]) == {"internal", "external1", "external2"}
    assert all(site["n"] == 1 for site in data["numbers"]["per_site"].values())
    assert data["numbers"]["checkpoints"]["multimodal"].startswith(f"{cancer_type}-mm-")
    assert data["numbers"]["checkpoints"]["vision"].startswith(f"{cancer_type}-vision-")
    for claim in claims:
        assert claim["claim"] in printed
    clinical = data["numbers"]["timing_clinical"]
    assert clinical["shape"][1:] == [192, 192] and clinical["cases"] == 1 and clinical["repeats"] == 3
    assert claims[-1]["value"] == pytest.approx(clinical["what_if_over_full"])
    # the stage breakdown of those runs: a full run preprocesses and encodes; a what-if reuses the features
    full, what_if = clinical["stages_ms"]["full"], clinical["stages_ms"]["what_if"]
    assert {"preprocess", "text", "image_encoder", "decode", "postprocess", "total"} <= set(full)
    assert "preprocess" not in what_if and what_if["image_encoder"] < full["image_encoder"]
    assert all(v >= 0 for v in [*full.values(), *what_if.values()])
    assert "not a claim: stages of the clinical-size runs, median wall ms: full preprocess" in printed
    numbers = data["numbers"]
    by_kind = numbers["neutral_edit_change_by_kind"]  # edits the rules ignore, on the internal case
    assert sum(v["n"] for v in by_kind.values()) == len(numbers["neutral_edit_change"]) == len(numbers["neutral_edit_kind"])
    assert all(0.0 <= v <= 1.0 for v in numbers["neutral_edit_change"])
    if cancer_type == "prostate":
        assert set(by_kind) <= {"PSA", "age"}
        if numbers["neutral_edit_change"]:
            assert "not a claim: edits the rules ignore (a PSA on the same side" in printed
    if cancer_type == "breast":  # the diagnostics beside the claims: omission on every site, neutral edits
        assert all(len(v) == 3 for v in numbers["omission_all_sites"].values())
        assert numbers["omission_mean_drop_all_sites"]["laterality"] > 0
        assert 0.0 <= numbers["neutral_edit_change_mean"] <= 1.0 and numbers["neutral_edit_change"]
        by_kind = numbers["neutral_edit_change_by_kind"]
        assert set(by_kind) <= {"T", "N"} and sum(v["n"] for v in by_kind.values()) == len(numbers["neutral_edit_change"])
        assert "not claims: omission Dice drop over all 3 held-out cases" in printed
        # the omission claims read 3 internal test cases: the per-site one, then the next two
        ids = numbers["omission_case_ids"]
        assert len(ids) == len(set(ids)) == 3 and all(i.startswith("BR-INT-") for i in ids)
        assert sorted(ids) == ids and all(len(v) == 3 for v in numbers["omission"].values())
        assert set(numbers["omission_t_decisive"]) <= set(ids)
        split = numbers["omission_t_split"]  # the T drop where T decides the target and where it does not
        assert split["T decides"]["n"] == len(numbers["omission_t_decisive"])
        assert split["T decides"]["n"] + split["T decides nothing"]["n"] == 3
        assert "internal T drop split by whether T decides the target" in printed
        where_t = next(c for c in claims if c["claim"].startswith("omitting T lowers Dice where T decides"))
        assert where_t["held"] == (split["T decides"]["ci_low"] > 0)  # False (NaN) when no case is T-decisive
        assert "omitting T lowers Dice (internal, mean of 3; T decides in" in printed
        # "lowers" is judged on the bootstrap CI of the paired drops, not on the mean alone
        for field in ("laterality", "surgery", "N", "T"):
            ci = numbers["omission_ci"][field]
            row = next(c for c in claims if c["claim"].startswith(f"omitting {field} lowers Dice"))
            assert ci["n"] == 3 and ci["ci_low"] <= row["value"] <= ci["ci_high"]
            assert row["value"] == pytest.approx(sum(numbers["omission"][field]) / 3)
            assert row["held"] == (ci["ci_low"] > 0)

"""Data-efficiency and component-omission studies end to end on a small synthetic cohort: real (tiny)
checkpoints trained by the project's trainer on 50 % and 100 % of the training cases, real inference and
what-if jobs through the in-process Dramatiq worker, per-case rows from the stored masks, the kind's
summary figure (learning curve with bootstrap bands, omission bars) built from those rows."""
from __future__ import annotations

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TINY_TRAINING = dict(text="numeric", widths="4,8", spacing="12,16,16", roi="8,16,16", slab=8, epochs=1,
                     steps_per_epoch=2, batch_size=1, n_train=4, n_val=0, case_shape=32, no_progress=True)


@pytest.fixture
def in_process_worker(monkeypatch):
    monkeypatch.delenv("BROKER_URL", raising=False)
    from gpu_worker import broker, dispatch

    broker.setup_broker("")
    dispatch.start_in_process_worker()
    yield dispatch
    dispatch.wait_in_process(120)
    dispatch.stop_in_process_worker()


@pytest.fixture
def cohort_and_checkpoints(settings, tmp_path):
    from io import StringIO

    from fixtures.cohort import write_cohort
    from portal.cases.loading import load_cohort
    from segmentation.model import read_checkpoint
    from segmentation.train import run_training

    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    for fraction in ("0.5", "1.0"):
        run_training(checkpoints / f"mm-f{fraction}.pt", data_fraction=fraction, stdout=StringIO(), **TINY_TRAINING)
    assert read_checkpoint(checkpoints / "mm-f0.5.pt")["cohort"]["n_train"] == 2  # half of the 4 cases
    settings.CONTEXTRT_CHECKPOINT_DIR = checkpoints
    settings.CONTEXTRT_DEFAULT_CHECKPOINT = "mm-f1.0.pt"
    write_cohort(tmp_path / "cohort", sites=["internal", "external1"], cases_per_site=2, seed=5,
                 cancer_types=["breast"], shape=48)
    load_cohort(tmp_path / "cohort")
    return checkpoints


def _run(in_process_worker, admin, spec):
    from evaluation.studies import results, services

    study = services.create_study(admin, spec)
    dispatched = services.run_study(admin, study)
    assert dispatched["jobs"], dispatched
    in_process_worker.wait_in_process(600)
    collected = services.collect_results(admin, study)
    assert collected["failed"] == 0 and collected["waiting"] == 0, collected
    return study, results.results_json(admin, study), results.figures(admin, study)


def test_data_efficiency_and_component_omission_studies(cohort_and_checkpoints, in_process_worker):
    from portal.accounts.models import Role
    from tests.jobs.conftest import make_user

    admin = make_user("kinds-admin", Role.ADMIN)
    sites = ["internal", "external1"]
    study, built, figures = _run(in_process_worker, admin, {
        "name": "data efficiency", "cancer_type": "breast", "kind": "data_efficiency", "site_codes": sites,
        "metrics": ["dice", "hd95_mm"], "reference_arm": "100 %",
        "arms": [{"label": "50 %", "checkpoint": "mm-f0.5.pt", "train_fraction": 0.5},
                 {"label": "100 %", "checkpoint": "mm-f1.0.pt", "train_fraction": 1.0}]})
    cases = built["cases"]
    assert {c["model"] for c in cases} == {"50 %", "100 %"} and len(cases) == 2 * 4
    assert {c["train_fraction"] for c in cases} == {0.5, 1.0}
    assert all(0.0 <= c["dice"] <= 1.0 for c in cases)
    curve = figures[1]
    assert [t.name for t in curve.data if t.mode == "lines+markers" or t.mode == "markers+lines"] or curve.data
    xs = sorted({float(x) for t in curve.data for x in (t.x or []) if x is not None})
    assert 50.0 in xs or 0.5 in xs  # the curve's points are the two fractions
    band = [t for t in curve.data if getattr(t, "fill", None) in ("toself", "tonexty")]
    assert band, "bootstrap CI band missing from the data-efficiency curve"

    study, built, figures = _run(in_process_worker, admin, {
        "name": "omission", "cancer_type": "breast", "kind": "component_omission", "site_codes": sites,
        "metrics": ["dice"], "reference_arm": "full",
        "arms": [{"label": "full", "checkpoint": "mm-f1.0.pt"},
                 {"label": "no laterality", "checkpoint": "mm-f1.0.pt", "omit_fields": ["laterality"]},
                 {"label": "no N", "checkpoint": "mm-f1.0.pt", "omit_fields": ["cN", "pN"]}]})
    cases = built["cases"]
    assert {c["condition"] for c in cases} == {"full context", "laterality", "cN, pN"}
    assert len(cases) == 3 * 4
    from portal.jobs.models import Job

    what_ifs = Job.objects.filter(study_key=study.key, kind="what_if")
    assert what_ifs.count() == 2 * 4
    for job in what_ifs:
        prompt = job.result_info.get("prompt_text", "")
        if "laterality" not in job.params["context"]:
            assert "side" not in prompt, prompt
    bars = figures[1]
    assert {str(x) for t in bars.data for x in (t.x or [])} >= {"laterality", "cN, pN"} or len(bars.data) >= 2


def test_text_module_ablation_study(cohort_and_checkpoints, in_process_worker):
    """LLMSeg's Table 3 in miniature: the same image path with different text modules (numeric "0301"
    category codes, the packaged MiniLM without prompt tuning, no text at all), each a real tiny checkpoint
    from the project's trainer, compared against one reference arm with paired tests per metric."""
    from io import StringIO

    from portal.accounts.models import Role
    from segmentation.model import read_checkpoint
    from segmentation.train import run_training
    from tests.jobs.conftest import make_user

    checkpoints = cohort_and_checkpoints
    for name, text in (("minilm-frozen.pt", dict(text="minilm", tuning="none")), ("vision.pt", dict(text="none"))):
        run_training(checkpoints / name, stdout=StringIO(), **dict(TINY_TRAINING, **text))
    assert read_checkpoint(checkpoints / "minilm-frozen.pt")["text_encoder"]["kind"] == "minilm"
    admin = make_user("ablation-admin", Role.ADMIN)
    arms = [{"label": "numeric 0301", "checkpoint": "mm-f1.0.pt"},
            {"label": "MiniLM, no tuning", "checkpoint": "minilm-frozen.pt"},
            {"label": "vision-only", "checkpoint": "vision.pt"}]
    study, built, figures = _run(in_process_worker, admin, {
        "name": "text ablation", "cancer_type": "breast", "kind": "text_ablation", "site_codes": ["internal", "external1"],
        "metrics": ["dice", "hd95_mm"], "reference_arm": "numeric 0301", "arms": arms})
    assert study.kind == "text_ablation"
    cases = built["cases"]
    assert {c["model"] for c in cases} == {a["label"] for a in arms} and len(cases) == 3 * 4
    assert all(0.0 <= c["dice"] <= 1.0 for c in cases)
    overall = {r["model"]: r for r in built["summary"] if r["site"] == "overall"}
    assert set(overall) == {a["label"] for a in arms}
    for label in ("MiniLM, no tuning", "vision-only"):  # paired tests against the reference arm on 4 cases
        assert overall[label]["n_cases"] == 4
        assert "dice_p_wilcoxon" in overall[label] and "dice_p_ttest" in overall[label], overall[label]
    assert figures, "no plot for the ablation study"

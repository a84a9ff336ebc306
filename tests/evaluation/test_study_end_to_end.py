"""A small study end to end on the synthetic cohort with the default checkpoints: real inference through the
in-process Dramatiq worker, per-case rows from the stored masks, summary with p-values, plots."""

import shutil
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DEFAULT_CHECKPOINTS = Path(__file__).resolve().parents[2] / "segmentation" / "checkpoints"


@pytest.fixture
def in_process_worker(monkeypatch):
    monkeypatch.delenv("BROKER_URL", raising=False)
    from gpu_worker import broker, dispatch

    broker.setup_broker("")
    dispatch.start_in_process_worker()
    yield dispatch
    dispatch.wait_in_process(120)
    dispatch.stop_in_process_worker()


def test_comparison_study_on_synthetic_cohort(settings, tmp_path, in_process_worker):
    from evaluation.studies import results, services
    from fixtures.cohort import write_cohort
    from portal.accounts.models import Role
    from portal.cases.loading import load_cohort
    from tests.jobs.conftest import make_user

    names = ("breast_vision.pt", "breast_multimodal.pt")
    if not all((DEFAULT_CHECKPOINTS / n).exists() for n in names):
        pytest.fail("default checkpoints missing from segmentation/checkpoints")
    checkpoints = tmp_path / "checkpoints"  # a copy: training may rewrite the originals meanwhile
    checkpoints.mkdir()
    for name in names:
        shutil.copy(DEFAULT_CHECKPOINTS / name, checkpoints / name)
    settings.CONTEXTRT_CHECKPOINT_DIR = checkpoints
    settings.CONTEXTRT_DEFAULT_CHECKPOINT = names[0]

    write_cohort(tmp_path / "cohort", sites=["internal", "external1"], cases_per_site=2, seed=3,
                 cancer_types=["breast"], shape=96)
    load_cohort(tmp_path / "cohort")
    admin = make_user("study-admin", Role.ADMIN)
    study = services.create_study(admin, {
        "name": "vision vs multimodal", "cancer_type": "breast", "site_codes": ["internal", "external1"],
        "reference_arm": "vision-only", "metrics": ["dice", "hd95_mm", "surface_dice"],
        "arms": [{"label": "vision-only", "checkpoint": names[0]},
                 {"label": "multimodal", "checkpoint": names[1]}]})
    dispatched = services.run_study(admin, study)
    assert dispatched["cases"] >= 2 and dispatched["jobs"]
    in_process_worker.wait_in_process(600)

    collected = services.collect_results(admin, study)
    assert collected["failed"] == 0, f"inference failed: {collected['errors'][:2]}"
    assert collected["waiting"] == 0, collected
    assert collected["stored"] == 2 * dispatched["cases"]
    built = results.results_json(admin, study)
    overall = {r["model"]: r for r in built["summary"] if r["site"] == "overall"}
    assert overall["multimodal"]["dice_p_wilcoxon"] is not None or overall["multimodal"]["n_cases"] < 2
    assert 0.0 <= overall["multimodal"]["dice_mean"] <= 1.0
    assert len(results.figures(admin, study)) >= 2
    # LLMSeg's Table 1 in miniature: the context-aware model ahead of vision-only on the external site.
    external = {r["model"]: r for r in built["summary"] if r["site"] == "external1"}
    assert external["multimodal"]["dice_mean"] > external["vision-only"]["dice_mean"], external

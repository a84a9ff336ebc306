"""Which checkpoint a job gets when none is named: the case's cancer type picks ``<type>_*.pt`` first, so a
prostate case is not sent to the breast model (the worker would refuse it)."""
from __future__ import annotations

import pytest

from portal.jobs import services


@pytest.fixture
def checkpoint_dir(settings, tmp_path):
    for name in ("breast_multimodal.pt", "breast_vision.pt", "prostate_vision.pt", "prostate_multimodal.pt",
                 "site-model.pt"):
        (tmp_path / name).write_bytes(b"")
    settings.CONTEXTRT_CHECKPOINT_DIR = tmp_path
    settings.CONTEXTRT_DEFAULT_CHECKPOINT = ""
    return tmp_path


def test_the_cancer_types_multimodal_checkpoint_is_the_default(checkpoint_dir):
    assert services.default_checkpoint("breast") == "breast_multimodal.pt"
    assert services.default_checkpoint("prostate") == "prostate_multimodal.pt"
    (checkpoint_dir / "prostate_multimodal.pt").unlink()
    assert services.default_checkpoint("prostate") == "prostate_vision.pt"  # any checkpoint of that type
    assert services.default_checkpoint(None) == "breast_multimodal.pt"  # no type: the first by name


def test_a_configured_default_wins_unless_its_name_says_another_type(checkpoint_dir, settings):
    settings.CONTEXTRT_DEFAULT_CHECKPOINT = "breast_vision.pt"
    assert services.default_checkpoint("breast") == "breast_vision.pt"
    assert services.default_checkpoint("prostate") == "prostate_multimodal.pt"
    settings.CONTEXTRT_DEFAULT_CHECKPOINT = "site-model.pt"  # no type in its name: the site's choice for all
    assert services.default_checkpoint("breast") == "site-model.pt"
    assert services.default_checkpoint("prostate") == "site-model.pt"
    settings.CONTEXTRT_DEFAULT_CHECKPOINT = "gone.pt"  # configured but not on disk
    assert services.default_checkpoint("prostate") == "prostate_multimodal.pt"


def test_no_checkpoint_at_all_is_a_named_error(settings, tmp_path):
    settings.CONTEXTRT_CHECKPOINT_DIR = tmp_path
    with pytest.raises(services.JobError) as err:
        services.default_checkpoint("breast")
    assert err.value.field == "checkpoint"


def test_the_compare_controls_run_the_cases_own_type(checkpoint_dir):
    from portal.web.page_data import checkpoints_by_family

    prostate = checkpoints_by_family("prostate")
    assert (prostate["vision"], prostate["multimodal"]) == ("prostate_vision.pt", "prostate_multimodal.pt")
    breast = checkpoints_by_family("breast")
    assert (breast["vision"], breast["multimodal"]) == ("breast_vision.pt", "breast_multimodal.pt")
    for name in ("prostate_multimodal.pt", "prostate_vision.pt"):
        (checkpoint_dir / name).unlink()
    # No prostate model left: a name that says no type may serve, a breast model never does.
    assert checkpoints_by_family("prostate")["multimodal"] == "site-model.pt"
    assert checkpoints_by_family("prostate")["vision"] is None
    assert services.checkpoints_for("prostate") == ["site-model.pt"]

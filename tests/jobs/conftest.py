"""Fixtures of the jobs tests: a tiny real segmentation checkpoint, a real CT case, users per role."""
from __future__ import annotations

from pathlib import Path

import pytest

STS_CT = "ibsi-sts/dicom/STS_019/CT/image"
STS_RTSTRUCT = "ibsi-sts/dicom/STS_019/CT/mask/RS.dcm"


def build_tiny_checkpoint(directory: Path, *, name: str = "tiny-breast.pt", cancer_type: str = "breast",
                          spacing=(8.0, 4.0, 4.0)) -> Path:
    """A real (untrained, small) ContextRT segmentation model saved with the segmentation package."""
    import torch

    from segmentation.model import ModelConfig, SegmentationModel, save_checkpoint

    torch.manual_seed(0)
    config = ModelConfig(cancer_type=cancer_type, text_encoder={"kind": "numeric", "dim": 16},
                         widths=(4, 4, 8, 8, 16), fusion_depth=1, fusion_heads=2,
                         target_spacing_zyx=tuple(spacing), roi_size=(16, 64, 64), overlap=0.25)
    directory.mkdir(parents=True, exist_ok=True)
    save_checkpoint(SegmentationModel(config), directory / name)
    return directory / name


@pytest.fixture(scope="session")
def tiny_checkpoint_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("checkpoints")
    build_tiny_checkpoint(directory)
    build_tiny_checkpoint(directory, name="tiny-prostate.pt", cancer_type="prostate")
    return directory


@pytest.fixture
def checkpoints(settings, tiny_checkpoint_dir):
    settings.CONTEXTRT_CHECKPOINT_DIR = tiny_checkpoint_dir
    settings.CONTEXTRT_DEFAULT_CHECKPOINT = "tiny-breast.pt"
    return tiny_checkpoint_dir


def make_user(username: str, role: str, sites=()):
    from portal.accounts.services import create_account

    return create_account(username, "pw-" + username + "-123", role, [s.code for s in sites])


@pytest.fixture
def sites(db):
    from portal.accounts.services import get_or_create_site

    return get_or_create_site("int", "Internal"), get_or_create_site("ext1", "External 1")


@pytest.fixture
def users(sites):
    home, other = sites
    from rest_framework.authtoken.models import Token

    from portal.accounts.models import Role

    made = {
        "coordinator": make_user("coord", Role.COORDINATOR, [home]),
        "other_coordinator": make_user("coord2", Role.COORDINATOR, [other]),
        "trainee": make_user("trainee", Role.TRAINEE, [home]),
        "rater": make_user("rater", Role.ONCOLOGIST, [home]),
        "admin": make_user("admin", Role.ADMIN),
        "worker": make_user("gpu-box", Role.WORKER),
    }
    made["worker_token"] = Token.objects.create(user=made["worker"]).key
    return made


# A valid clinical context per cancer type: multimodal jobs refuse a case without one.
EXAMPLE_CONTEXTS = {
    "breast": {"laterality": "left", "surgery": "bcs", "cT": "T2", "cN": "N0"},
    "prostate": {"t_stage": "T2b", "psa": 3.9, "gleason_primary": 3, "gleason_secondary": 3, "sv_invasion": False},
}


def example_context_version(case, version: int = 1):
    from clinical import render_prompt, validate_context
    from portal.cases.models import ClinicalContextVersion

    data = validate_context(case.cancer_type, EXAMPLE_CONTEXTS[case.cancer_type])
    return ClinicalContextVersion.objects.create(case=case, version=version, data=data,
                                                 prompt_text=render_prompt(case.cancer_type, data))


def create_case(realdata_dir: Path, site, *, with_ground_truth: bool = True, cancer_type: str = "breast",
                label: str = "STS-019"):
    """Ingest the real STS_019 CT (and its RTSTRUCT as ground truth) and make a Case with context v1."""
    from portal.cases.models import Case
    from portal.imaging.ingest import ingest_files
    from portal.imaging.models import ROI, Series

    paths = sorted((realdata_dir / STS_CT).iterdir())
    if with_ground_truth:
        paths.append(realdata_dir / STS_RTSTRUCT)
    report = ingest_files(paths, site=site, allow_partial=True)
    series = Series.objects.filter(series_uid__in=report.series, modality="CT").first()
    roi = ROI.objects.filter(pk__in=report.rois).exclude(mask_path="").first() if with_ground_truth else None
    case = Case.objects.create(label=label, site=site, cancer_type=cancer_type, ct_series=series, ground_truth=roi)
    example_context_version(case)
    return case


@pytest.fixture
def sts_case(realdata_dir, sites, users):
    return create_case(realdata_dir, sites[0])

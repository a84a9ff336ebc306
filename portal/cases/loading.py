"""Loading a synthetic cohort (``fixtures`` ``cohort.json``) into the catalogue, and the demo users.

``load_cohort`` ingests each case's CT + RTSTRUCT through the validated ingest
path (``portal.imaging.ingest.ingest_files``: de-identification, rasterisation),
then creates the Site, the Case (cohort/split tags, ground-truth ROI link) and
its first clinical-context version with the masked note. A case already in the
catalogue (same site and label) is skipped, so loading twice duplicates nothing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pydicom
from django.db import transaction

from portal.accounts.models import Role, Site
from portal.cases.models import Case
from portal.cases.services import save_context_version

MANIFEST_FORMAT = "contextrt-cohort"
# fixtures split -> Case.cohort: the internal site's held-out cases are the internal test set.
SPLIT_TO_COHORT = {"train": Case.Cohort.TRAIN, "val": Case.Cohort.VALIDATION}

# One demo account per role; coordinators and trainees belong to sites by fixture key.
DEMO_USERS = (
    ("admin", Role.ADMIN, ()),
    ("coordinator", Role.COORDINATOR, ("internal", "external1", "external2")),
    ("coordinator_ext2", Role.COORDINATOR, ("external2",)),
    ("oncologist", Role.ONCOLOGIST, ("internal",)),
    ("trainee", Role.TRAINEE, ("internal", "external1", "external2")),
)
DEMO_PASSWORD_SUFFIX = "-demo-2026"


class CohortError(ValueError):
    """The manifest or a case folder is unusable; the message names the file or field."""


@dataclass
class LoadReport:
    created: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def read_manifest(folder) -> dict:
    path = Path(folder) / "cohort.json"
    if not path.is_file():
        raise CohortError(f"{path}: no cohort.json manifest (write one with manage.py make_cohort)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CohortError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise CohortError(f"{path}: 'format' must be {MANIFEST_FORMAT!r}")
    if not isinstance(manifest.get("cases"), list):
        raise CohortError(f"{path}: 'cases' must be a list")
    return manifest


def _inside(folder: Path, relative, what: str, case_id: str) -> Path:
    """A manifest path resolved under the cohort folder (a manifest cannot point elsewhere)."""
    if not isinstance(relative, str) or not relative:
        raise CohortError(f"case {case_id}: '{what}' is missing")
    base = folder.resolve()
    path = (base / relative).resolve()
    if base not in path.parents:
        raise CohortError(f"case {case_id}: '{what}' {relative!r} lies outside the cohort folder")
    if not path.exists():
        raise CohortError(f"case {case_id}: '{what}' {relative!r} does not exist")
    return path


def cohort_for(split: str, site_key: str, internal_site: bool) -> str:
    if not internal_site:
        return Case.Cohort.EXTERNAL
    return SPLIT_TO_COHORT.get(split, Case.Cohort.INTERNAL)


def ensure_site(key: str, record: dict | None) -> Site:
    name = ((record or {}).get("institution") or key)[:200]
    site, created = Site.objects.get_or_create(code=key, defaults={"name": name})
    if not created and site.name == key and name != key:  # created earlier by create_demo_users
        site.name = name
        site.save(update_fields=["name"])
    return site


def load_case(folder: Path, entry: dict, sites: dict, *, teaching_splits=("train", "val")) -> tuple[Case | None, list[str]]:
    """Ingest and catalogue one manifest entry; returns (case or None when already loaded, warnings)."""
    from portal.imaging.ingest import ingest_files
    from portal.imaging.models import ROI, Series

    case_id = entry.get("id")
    if not isinstance(case_id, str) or not case_id:
        raise CohortError("a case entry lacks its 'id'")
    site_key, cancer_type = entry.get("site"), entry.get("cancer_type")
    if site_key not in sites:
        raise CohortError(f"case {case_id}: site {site_key!r} is not in the manifest's 'sites'")
    # Paths are checked even for a case already loaded: a manifest pointing outside its folder is refused.
    ct_dir = _inside(folder, entry.get("ct_dir"), "ct_dir", case_id)
    rtstruct = _inside(folder, entry.get("rtstruct"), "rtstruct", case_id)
    site = ensure_site(site_key, sites[site_key])
    if Case.objects.filter(site=site, label=case_id).exists():
        return None, []
    ct_files = sorted(p for p in ct_dir.iterdir() if p.is_file())
    if not ct_files:
        raise CohortError(f"case {case_id}: {entry['ct_dir']} holds no files")
    original_series_uid = str(pydicom.dcmread(ct_files[0], stop_before_pixels=True).SeriesInstanceUID)
    with transaction.atomic():
        report = ingest_files(ct_files + [rtstruct], site=site,
                              names=[f"{case_id}/{p.name}" for p in ct_files] + [f"{case_id}/rtstruct.dcm"])
        stored_uid = report.series_uid_map.get(original_series_uid)
        series = Series.objects.filter(series_uid=stored_uid).first() if stored_uid else None
        if series is None:
            raise CohortError(f"case {case_id}: the CT series was not stored by ingest")
        ctv_name = entry.get("ctv_roi") or "CTV"
        ground_truth = (ROI.objects.filter(structure_set_id__in=report.structure_sets, name=ctv_name)
                        .order_by("-structure_set_id").first())
        if ground_truth is not None:
            ground_truth.structure_set.source = "ground_truth"
            ground_truth.structure_set.save(update_fields=["source"])
        split = str(entry.get("split", ""))
        internal_site = "test" != (sites[site_key] or {}).get("split", "train/val/test")
        case = Case.objects.create(
            label=case_id, site=site, cancer_type=cancer_type, ct_series=series, ground_truth=ground_truth,
            cohort=cohort_for(split, site_key, internal_site), tags=[f"split:{split}", f"site:{site_key}"],
            teaching=split in teaching_splits)
        save_context_version(case, entry.get("context") or {}, author=None, note=entry.get("note") or "")
    warnings = [f"{case_id}: {w.get('file', '')}: {w.get('problem', '')}" for w in report.warnings]
    if ground_truth is None:
        warnings.append(f"{case_id}: no ROI named {ctv_name!r}; the case has no ground truth")
    return case, warnings


def load_cohort(folder, *, progress: Callable[[str], None] | None = None) -> LoadReport:
    """Load every case of the cohort in ``folder``; each case is one transaction, an existing case is skipped."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    sites = manifest.get("sites") or {}
    report = LoadReport()
    for entry in manifest["cases"]:
        case, warnings = load_case(folder, entry, sites)
        report.warnings += warnings
        if case is None:
            report.skipped.append(entry["id"])
            if progress:
                progress(f"{entry['id']}: already loaded, skipped")
        else:
            report.created.append(case.label)
            if progress:
                progress(f"{case.label}: loaded ({case.cohort}, {case.ct_series.num_slices} slices)")
    return report


def demo_password(username: str) -> str:
    return username + DEMO_PASSWORD_SUFFIX


def create_demo_users(*, reset_passwords: bool = True) -> list[dict]:
    """One user per role with site memberships (sites are created when missing); returns the logins."""
    from portal.accounts.services import create_account

    logins = []
    for username, role, site_keys in DEMO_USERS:
        for key in site_keys:
            ensure_site(key, None)
        create_account(username, demo_password(username), role, site_keys, update=reset_passwords)
        logins.append({"username": username, "password": demo_password(username), "role": role,
                       "sites": list(site_keys) or ["(all)"]})
    return logins

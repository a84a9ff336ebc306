"""Free-text clinical notes: rule-based extraction of a structured context, and PHI masking.

``extract_context(cancer_type, text)`` proposes field values (clinical/schema.py
names) from the phrasings referral letters use ("Lt.", "left-sided", "BCS",
"lumpectomy", "MRM", "cT2N1M0", "pT1c pN0(sn)", "ypN0", "Gleason 4+3=7",
"PSA 12.4 ng/ml", ...); only fields it finds are returned, and the result is
validated. ``mask_phi(text)`` replaces names, dates and identifiers (MRN / unit /
hospital numbers) with [NAME], [DATE], [ID] before a note is stored.
"""
from __future__ import annotations

import re

from clinical.schema import N_BREAST, T_BREAST, fields_for, validate_context

# ------------------------------------------------------------------ extraction

_LEFT = r"(?:left(?:[- ]sided)?|lt\.?|lft|sinistra)"
_RIGHT = r"(?:right(?:[- ]sided)?|rt\.?|dextra)"
_BREAST_WORD = r"(?:breast|chest\s*wall)"


def _find_laterality(text: str) -> str | None:
    low = text.lower()
    if re.search(r"\bbilateral\b", low) and re.search(_BREAST_WORD, low):
        return "bilateral"
    # Side adjacent to the breast / chest wall first ("left breast", "breast, Lt.", "of the right breast").
    near = re.findall(rf"\b({_LEFT}|{_RIGHT})\s*(?:sided\s+)?{_BREAST_WORD}|{_BREAST_WORD}\s*,?\s*\(?({_LEFT}|{_RIGHT})(?![a-z])",
                      low)
    sides = {("left" if re.match(_LEFT, a or b) else "right") for a, b in near}
    if len(sides) == 1:
        return sides.pop()
    if len(sides) > 1:
        return "bilateral"
    anywhere = {("left" if re.match(_LEFT, m) else "right")
                for m in re.findall(rf"(?<![a-z]){_LEFT}(?![a-z])|(?<![a-z]){_RIGHT}(?![a-z])", low)}
    return anywhere.pop() if len(anywhere) == 1 else None


def _find_surgery(text: str) -> str | None:
    low = text.lower()
    bcs = re.search(r"\b(bcs|breast[- ]conserving|breast[- ]conservation|lumpectomy|wide local excision|wle|"
                    r"partial mastectomy|segmentectomy|quadrantectomy)\b", low)
    mast = re.search(r"\b(mrm|(?:total|simple|modified radical|radical|skin[- ]sparing|nipple[- ]sparing)?\s*"
                     r"mastectomy)\b", re.sub(r"partial mastectomy", "", low))
    if bcs and not mast:
        return "bcs"
    if mast and not bcs:
        return "mastectomy"
    if bcs and mast:  # e.g. "lumpectomy followed by completion mastectomy": the later, larger operation holds
        return "mastectomy" if mast.start() > bcs.start() else "bcs"
    return None


_STAGE_TOKEN = re.compile(
    r"(?<![A-Za-z])(?P<prefix>yp|yc|p|c|i?c)?(?P<letter>[TNM])(?P<value>is|X|x|[0-4](?:mi|[a-d])?)"
    r"(?:\s*\((?:sn|i[+-]|mol[+-]|f|m)\))?",
)


def _canon(letter: str, value: str) -> str:
    return letter + ("is" if value.lower() == "is" else value.upper() if value.lower() == "x" else value.lower())


_COMPACT_TNM = re.compile(
    r"(?<![A-Za-z])(?P<prefix>yp|yc|p|c)?(?P<t>T(?:is|X|[0-4](?:mi|[a-d])?))(?P<n>N(?:X|[0-4](?:mi|[a-c])?)"
    r"(?:\s*\((?:sn|i[+-]|mol[+-])\))?)(?P<m>M[01X])?"
)


def _expand_compact(text: str) -> str:
    """'ycT2N1M0' -> 'ycT2 ycN1 ycM0' so every component carries its prefix."""
    def spaced(m: re.Match) -> str:
        prefix = m.group("prefix") or ""
        parts = [m.group("t"), m.group("n")] + ([m.group("m")] if m.group("m") else [])
        return " ".join(prefix + part for part in parts)

    return _COMPACT_TNM.sub(spaced, text)


def _find_stages(text: str) -> dict:
    """{'cT': 'T2', 'pN': 'N1a', ...} from compact (cT2N1M0) or spaced (pT1c pN0(sn)) TNM tokens.

    Unprefixed stages count as clinical; p/yp as pathological (the first mention wins).
    """
    found: dict[str, str] = {}
    for m in _STAGE_TOKEN.finditer(_expand_compact(text)):
        prefix = (m.group("prefix") or "").lower()
        kind = "p" if prefix in ("p", "yp") else "c"
        letter = m.group("letter")
        value = _canon(letter, m.group("value"))
        if letter == "M" and value not in ("M0", "M1", "MX"):
            continue
        found.setdefault(f"{kind}{letter}", value)
    return found


def _breast_pathology(low: str) -> str | None:
    if re.search(r"mixed|ductal\s*/\s*lobular|ductal and lobular", low):
        return "mixed"
    if re.search(r"lobular|\bilc\b", low):
        return "ILC"
    if re.search(r"ductal carcinoma in situ|\bdcis\b", low) and not re.search(r"invasive|\bidc\b|\bnst\b", low):
        return "DCIS"
    if re.search(r"invasive ductal|\bidc\b|\bnst\b|invasive carcinoma|ductal carcinoma", low):
        return "IDC"
    return None


def _neoadjuvant(low: str) -> bool | None:
    if re.search(r"\bno (?:neoadjuvant|neo-adjuvant|nac\b|primary systemic)|upfront surgery|primary surgery", low):
        return False
    if re.search(r"neo-?adjuvant|\bnac\b|primary systemic therapy|\byp[tn]", low):
        return True
    return None


def _age(low: str) -> int | None:
    m = re.search(r"\b(\d{2,3})\s*(?:-?\s*(?:year|yr)s?[- ]old|\s*yo\b|\s*y/o\b|\s*[mf]\b)", low) or \
        re.search(r"\bage[d:]?\s*(\d{2,3})\b", low)
    if m:
        age = int(m.group(1))
        return age if 18 <= age <= 120 else None
    return None


def _extract_breast(text: str) -> dict:
    low = text.lower()
    data: dict = {}
    side = _find_laterality(text)
    if side:
        data["laterality"] = side
    surgery = _find_surgery(text)
    if surgery:
        data["surgery"] = surgery
    stages = _find_stages(text)
    for key, allowed in (("cT", T_BREAST), ("cN", N_BREAST), ("pT", T_BREAST), ("pN", N_BREAST)):
        if stages.get(key) in allowed:
            data[key] = stages[key]
    for key in ("cM", "pM"):
        if key in stages:
            data[key] = stages[key]
    pathology = _breast_pathology(low)
    if pathology:
        data["pathology"] = pathology
    nac = _neoadjuvant(low)
    if nac is not None:
        data["neoadjuvant_chemo"] = nac
    age = _age(low)
    if age:
        data["age"] = age
    return data


def _extract_prostate(text: str) -> dict:
    low = text.lower()
    data: dict = {}
    psa = re.search(r"\b(?:i?psa)\b[^0-9]{0,20}?(\d+(?:\.\d+)?)\s*(?:ng/ml)?", low)
    if psa:
        data["psa"] = float(psa.group(1))
    gleason = (re.search(r"(?:gleason|gs)\b[^0-9]{0,12}([1-5])\s*\+\s*([1-5])", low)
               or re.search(r"(?:gleason|gs)\b[^0-9]{0,12}\d{1,2}\s*\(\s*([1-5])\s*\+\s*([1-5])\s*\)", low))
    if gleason:
        data["gleason_primary"], data["gleason_secondary"] = int(gleason.group(1)), int(gleason.group(2))
    isup = re.search(r"(?:isup|grade group|\bgg)\s*(?:grade group)?\s*:?\s*([1-5])\b", low)
    if isup:
        data["isup_grade_group"] = int(isup.group(1))
    t_stage = re.search(r"(?<![a-z])(?:c|p|yp)?t([1-4][a-c]?)(?![0-9a-z])", low)
    if t_stage:
        data["t_stage"] = "T" + t_stage.group(1)
    if re.search(r"\bno (?:evidence of )?(?:seminal vesicle|svi)|seminal vesicles? (?:uninvolved|free|negative|"
                 r"not involved)|svi (?:absent|negative)|without (?:seminal vesicle|svi)", low):
        data["sv_invasion"] = False
    elif re.search(r"seminal vesicle (?:invasion|involvement)|involvement of the seminal vesicles|"
                   r"svi (?:present|positive)|\bsvi\b|pt3b|\bt3b\b", low):
        data["sv_invasion"] = True
    if re.search(r"prostatectomy|\bralp\b|\brarp\b|\brp\b|prostate bed", low):
        data["prostatectomy"] = True
    elif re.search(r"intact prostate|prostate in situ|no prior surgery|definitive", low):
        data["prostatectomy"] = False
    if re.search(r"\bsalvage\b", low):
        data["rt_aim"] = "salvage"
    elif re.search(r"\badjuvant\b", low) and data.get("prostatectomy"):
        data["rt_aim"] = "adjuvant"
    elif re.search(r"\bdefinitive\b", low):
        data["rt_aim"] = "definitive"
    age = _age(low)
    if age:
        data["age"] = age
    return data


def extract_context(cancer_type: str, text: str) -> dict:
    """Proposed, validated context fields found in ``text`` (fields not mentioned are absent)."""
    fields_for(cancer_type)  # raises ContextValidationError for an unknown cancer type
    if not isinstance(text, str):
        raise TypeError("the clinical note must be text")
    if cancer_type == "breast":
        data = _extract_breast(text)
    elif cancer_type == "prostate":
        data = _extract_prostate(text)
    else:
        data = {}
    if cancer_type == "prostate" and "isup_grade_group" in data and "gleason_primary" in data:
        data.pop("isup_grade_group")  # derived from the Gleason patterns by validation; avoids a contradiction
    return validate_context(cancer_type, data)


# ------------------------------------------------------------------ PHI masking

_MONTHS = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|jun(?:e)?|jul(?:y)?|aug(?:ust)?|sep(?:t(?:ember)?)?|" \
          r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
_DATE_PATTERNS = (
    r"\b\d{4}-\d{1,2}-\d{1,2}\b",
    r"\b\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}\b",
    rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTHS}\.?,?\s+\d{{4}}\b",
    rf"\b{_MONTHS}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}\b",
    rf"\b{_MONTHS}\.?\s+\d{{4}}\b",
)
_ID_LABEL = r"(?:MRN|MR\s*No\.?|Unit\s*No\.?|Hospital\s*(?:No\.?|Number)|Medical\s+record\s+(?:no\.?|number)|" \
            r"Patient\s*ID|NHS\s*(?:No\.?|Number)|Accession\s*(?:No\.?)?)"
_NAME = r"[A-Z][a-z][a-zA-Z'\-]*(?:[ ][A-Z][a-z][a-zA-Z'\-]*){0,2}"
_NAME_LABEL = r"(?:Patient|Name|Patient name|Pt)"
_TITLE = r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof)\.?"


def mask_phi(text: str) -> str:
    """Replace names, dates and identifiers with [NAME], [DATE], [ID] (clinical numbers such as PSA are kept)."""
    masked = text
    # Identifiers after a label ("MRN: 1234567", "Unit No. 7932142") and long bare digit runs.
    masked = re.sub(rf"({_ID_LABEL})\s*[:#]?\s*[A-Z]{{0,3}}\d[\d\- ]{{3,}}\d", r"\1 [ID]", masked, flags=re.IGNORECASE)
    masked = re.sub(r"(?<![\d.])\d{6,}(?![\d.])", "[ID]", masked)
    # Dates (and a date of birth label).
    for pattern in _DATE_PATTERNS:
        masked = re.sub(pattern, "[DATE]", masked, flags=re.IGNORECASE)
    # Names after a label or a title.
    masked = re.sub(rf"(\b{_NAME_LABEL}\s*:\s*)(?:{_TITLE}\s+)?{_NAME}", r"\1[NAME]", masked)
    masked = re.sub(rf"\b{_TITLE}\s+{_NAME}", "[NAME]", masked)
    return masked

"""Training of a ``SegmentationModel`` on a synthetic cohort (fixtures/).

- Loss: Dice + CE (weights 1.0 / 1.0; MONAI DiceCELoss with sigmoid) or Dice + Focal.
- Optimiser: AdamW, lr 1e-4 by default. Seeded (python, numpy, torch).
- Samples: each case is preprocessed once to the working grid. A training sample is a random
  slab along the slice axis that keeps the full in-plane field of view (so the network always sees
  both body sides — laterality is only decidable with the midline in view), centred on a target
  voxel with probability 2/3 ("random patches covering the target"), else anywhere.
- Context augmentation: with probability ``counterfactual_p`` the case's context is swapped for a
  counterfactual one (breast: laterality flipped, N0↔N1, BCS↔mastectomy, and T2↔T3 where no N
  stage is positive; prostate: intact↔post-prostatectomy, SV invasion on↔off, across the pelvic-node
  rule by age or PSA) and the target is the matching
  counterfactual ground truth on the same anatomy (``fixtures.ctv_for``), so the model must read
  the context rather than guess from anatomy.
- Component omission: with probability ``omit_p`` one component (laterality, surgery, N or T) is
  dropped from the case's own context while the target stays the true CTV, so a prompt with an
  unknown field means "decide from the image" (LLMSeg's Table 4 asks what omission costs). With
  ``omit_in_counterfactuals``, counterfactual samples also lose a component they did not change
  (their own target and contrast term kept). Without it a prompt lacking T had only ever been trained
  on the case's own context and without the contrast term, and the model learnt the two regimes apart:
  on mastectomy cases it drew a shell of 2,000–6,000 extra voxels with T in the text and not without.
- Context contrast (``contrast_weight`` > 0): the voxels whose target changes with the context
  (own CTV XOR a counterfactual CTV: the other breast, the nodal regions, the skin band) get an
  extra BCE term, averaged over those voxels per sample. Dice + CE over the whole slab barely
  notices a few hundred nodal voxels beside thousands of breast voxels; this term weighs each kind
  of context change by its own size, so "N1" has to add the nodes as firmly as "left" moves the side.
- Stage coarsening (``coarsen_p`` > 0, breast): with that probability a sample's T and N stages are
  rendered without their subdivision (cT1c → cT1, N2a → N2, N1mi → N1). The breast rules depend only on
  the main stage, and with a few dozen training cases a rare string such as "cT1a" or "N2a" otherwise
  becomes a key the model memorises (it over-segmented such cases).
- Context consistency (``consistency_weight`` > 0): a sample whose context has a *neutral* edit (breast:
  another T stage, T left out, or another positive N stage; prostate: PSA x 0.8 or x 1.25, age -3 or +3; where
  the ground-truth CTV stays the same, see ``neutral_context_edits``) is decoded a second time under that
  edit from the same image features, and the two probability maps are pulled together
  (``context_consistency_loss``). Dice + CE only asks
  both prompts for the target; where the model was unsure, "cT1c" and "cT2" still moved hundreds to
  thousands of voxels, so a trainee's irrelevant edit changed the contour and leaving T out changed a
  case's Dice by up to 0.075 (0.018 on average).
- Neutral-edit augmentation (``neutral_p`` > 0): with that probability a sample is trained under one of its
  neutral edits instead of its own context, with the same target (and, with the consistency term on, its
  own context as the twin). The consistency term alone left a prostate model's contour moving by 1 − Dice
  0.17 under PSA edits the rules ignore; a trial with ``neutral_p`` 0.5 did not lower it (docs/models.md).
- Augmentation: random intensity scale/shift and Gaussian noise, small random z-shift, and with
  ``max_shift`` > 0 a random in-plane translation of up to that many working voxels (air fills the
  gap): another site's table position and field of view put the anatomy elsewhere in the sliding
  windows. No left-right mirroring: it would contradict the laterality in the context.
- Validation Dice every epoch; a checkpoint (without the frozen LM) after every epoch plus a
  ``.resume`` file with optimiser/RNG state, so an interrupted run continues with ``resume=True``.
- ``progress(dict)`` receives epoch, step, total_steps, loss, eta_s after every step.
"""
from __future__ import annotations

import math
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from monai.losses import DiceCELoss, DiceFocalLoss

from clinical.prompt import breast_n_stage, breast_t_stage, omit_fields
from clinical.risk import HIGH_RISK_GROUPS, n_stage_positive, nccn_risk_group, t_stage_advanced
from clinical.schema import ContextValidationError, validate_context
from segmentation.model import ModelConfig, SegmentationModel, save_checkpoint
from segmentation.networks.cpu_convolution import prefer_onednn
from segmentation.transforms import prepare, prepare_label


@dataclass
class TrainConfig:
    epochs: int = 10
    steps_per_epoch: int = 50
    batch_size: int = 2
    lr: float = 1e-4
    weight_decay: float = 1e-2
    loss: str = "dicece"  # "dicece" | "dicefocal"
    seed: int = 0
    slab_slices: int = 32  # working-grid slices per training sample (multiple of the divisor)
    counterfactual_p: float = 0.5
    omit_p: float = 0.2
    contrast_weight: float = 0.0  # weight of the context-contrast BCE term (0: off)
    max_shift: int = 0  # in-plane translation augmentation, working voxels (0: off)
    coarsen_p: float = 0.0  # probability of dropping the T/N subdivision from a breast sample's context
    consistency_weight: float = 0.0  # weight of the neutral-edit consistency term (0: off)
    # Probability of training a sample under one of its neutral edits instead of its own context, with the
    # same target (0: off); with the consistency term on, the twin is then the context itself.
    neutral_p: float = 0.0
    # Also leave a component out of counterfactual samples (one the counterfactual did not change), so a
    # prompt without T is not a sign of "own context, no contrast term" (see the module docstring).
    omit_in_counterfactuals: bool = False
    # Breast T counterfactuals to every cohort stage across the T3 line (``_counterfactual_contexts``); the
    # caller's ``prepare_case`` builds them, the field records the choice in the checkpoint.
    every_t_counterfactual: bool = False
    lr_schedule: str = "constant"  # "constant" | "cosine" (decays to lr / 20 over the run)
    # Re-encode the reference contexts for the context standardiser every K steps (and always before
    # validation and saving). Re-encoding the whole bank costs several optimiser steps (6.8 s against
    # 1.1 s per step for the 128 prostate prompts on one thread), so K > 1 makes text training faster.
    stats_every: int = 1
    data_fraction: float = 1.0
    cohort: dict = field(default_factory=dict)


@dataclass
class TrainingCase:
    """One case on the working grid, with counterfactual targets for alternative contexts."""

    case_id: str
    image: torch.Tensor  # [1, Z, Y, X]
    variants: list  # [(context dict, label tensor [1, Z, Y, X])]; variants[0] is the case's own
    omissions: list = field(default_factory=list)  # the own context with one component left out
    # decisive[i]: bool [1, Z, Y, X], voxels where variant i's target differs from the own target
    # (decisive[0]: where any counterfactual differs). Empty list: no contrast term for this case.
    decisive: list = field(default_factory=list)
    # neutral[i]: edits of variant i's context whose ground-truth CTV is variant i's target (empty: none)
    neutral: list = field(default_factory=list)


OMITTABLE = {"breast": ("laterality", "surgery", "N", "T")}
_STAGE_KEYS = {"breast": ("cT", "pT", "cN", "pN")}
_SUBDIVIDED = re.compile(r"^([TN][0-4])(mi|[a-d])$")


def coarsen_stages(cancer_type: str, context: dict) -> dict:
    """``context`` with its T/N stages reduced to the main stage (T1c → T1, N1mi → N1); breast only,
    where the CTV rules read nothing finer (prostate's NCCN risk needs T2b/T2c, so it is left alone)."""
    keys = _STAGE_KEYS.get(cancer_type, ())
    out = dict(context)
    for key in keys:
        match = _SUBDIVIDED.match(str(out.get(key) or ""))
        if match:
            out[key] = match.group(1)
    return out


def _with_stage(context: dict, keys: tuple[str, str], value: str) -> dict:
    """``context`` with every recorded stage of ``keys`` (clinical, pathological) set to ``value``; the
    clinical one is set even when unrecorded. Changing only the stage the prompt shows would leave the
    other record deciding the CTV (cN1 with pN0 keeps the nodes), and the text would contradict the target."""
    clinical, pathological = keys
    out = dict(context, **{clinical: value})
    if context.get(pathological):
        out[pathological] = value
    return out


def _prostate_counterfactuals(context: dict) -> list[dict]:
    """Intact <-> post-prostatectomy (with the RT aim that goes with it), seminal-vesicle invasion on <-> off
    (with the T stage that goes with it: T3b is SV invasion), and across the pelvic-node rule: a high-risk
    case under 80 turns 82, one of 80 or more turns 72, and a lower-risk case gets a PSA of 25 ng/mL."""
    out = []
    if context.get("prostatectomy") is not None:
        post = not context["prostatectomy"]
        out.append(dict(context, prostatectomy=post, rt_aim="salvage" if post else "definitive"))
    if context.get("sv_invasion") is not None and context.get("t_stage"):
        invaded = not context["sv_invasion"]
        out.append(dict(context, sv_invasion=invaded, t_stage="T3b" if invaded else "T3a"))
    risk = nccn_risk_group(context)
    if risk in HIGH_RISK_GROUPS and context.get("age") is not None:
        out.append(dict(context, age=72 if context["age"] >= 80 else 82))
    elif risk is not None:
        out.append(dict(context, psa=25.0))
    return out


# T stages a counterfactual puts into a breast context where T alone decides the nodes: across the T3 line,
# by default the one stage LLMSeg-style "T2 <-> T3", with ``every_t_stage`` each stage the cohort shows.
_T_COUNTERFACTUALS = {False: (("T3",), ("T2",)), True: (("T3", "T4b"), ("T1c", "T2"))}


def _counterfactual_contexts(cancer_type: str, context: dict, every_t_stage: bool = False) -> list[dict]:
    """The case's context with one component changed. Breast: laterality flipped, N0 <-> N1,
    BCS <-> mastectomy, and, where no N stage is positive (so T alone decides the nodes), T2 <-> T3;
    with ``every_t_stage`` T1c/T2 <-> T3/T4b, one counterfactual per stage. With "T3" alone the model never
    saw a counterfactual "cT4b": on the T-decisive held-out cases it covered 4-12 % of the nodes for a BCS
    "N0, cT4b" against 15-56 % for "N0, cT3".
    Prostate: see ``_prostate_counterfactuals``."""
    if cancer_type == "prostate":
        return _prostate_counterfactuals(context)
    if cancer_type != "breast":
        return []
    out = []
    side = context.get("laterality")
    if side in ("left", "right"):
        out.append(dict(context, laterality="right" if side == "left" else "left"))
    n = breast_n_stage(context)
    if n is not None:
        out.append(_with_stage(context, ("cN", "pN"), "N0" if n_stage_positive(n) else "N1"))
    if context.get("surgery") in ("bcs", "mastectomy"):
        out.append(dict(context, surgery="mastectomy" if context["surgery"] == "bcs" else "bcs"))
    t = breast_t_stage(context)
    if t is not None and not any(n_stage_positive(context.get(k)) for k in ("cN", "pN")):
        raise_to, lower_to = _T_COUNTERFACTUALS[every_t_stage]
        stages = lower_to if t_stage_advanced(t[1]) else raise_to
        out += [_with_stage(context, ("cT", "pT"), stage) for stage in stages]
    return out


# T and N stages a neutral edit may put into a breast context (the strings the cohort and the
# counterfactuals use, one per subdivision).
_NEUTRAL_T_STAGES = ("Tis", "T1a", "T1b", "T1c", "T2", "T3", "T4b")
_NEUTRAL_N_STAGES = ("N0", "N1mi", "N1", "N1a", "N2a", "N3a")


# PSA and age edits offered on a prostate context: the nudges a trainee tries ("PSA 8 instead of 10").
_NEUTRAL_PSA_FACTORS = (0.8, 1.25)
_NEUTRAL_AGE_STEPS = (-3, 3)


def _prostate_edits(context: dict) -> list[dict]:
    out = []
    if context.get("psa") is not None:
        out += [dict(context, psa=round(float(context["psa"]) * f, 1)) for f in _NEUTRAL_PSA_FACTORS]
    if context.get("age") is not None:
        out += [dict(context, age=int(context["age"]) + d) for d in _NEUTRAL_AGE_STEPS]
    kept = []
    for edit in out:
        try:
            validate_context("prostate", edit)
        except ContextValidationError:
            continue  # e.g. an age beyond the editor's range
        if edit != context:
            kept.append(edit)
    return kept


def neutral_context_edits(cancer_type: str, context: dict) -> list[dict]:
    """Candidate edits of ``context`` that its rules may ignore (breast: every other T stage, T left out,
    every other N stage; prostate: PSA x 0.8 and x 1.25, age -3 and +3 years); the caller keeps those whose
    ground-truth CTV is unchanged (``prepare_case`` checks each one on the case's anatomy, so no rule is
    restated here): another T1/T2 stage, another positive N stage ("N1" for "N1a"), a PSA that stays on its
    side of the high-risk line, an age that stays on its side of 80. N left out is not offered: omission
    training asks "unknown N" to keep the case's own target, nodes included. Other cancer types: none yet.

    The N edits matter because the N0 -> N1 counterfactual writes the plain "N1" the cohort's own cases
    rarely show: without them the model learnt "N1" as a string of its own and drew a contour thousands of
    voxels larger for "N1" than for "N1a" on the same case."""
    if cancer_type == "prostate":
        return _prostate_edits(context)
    if cancer_type != "breast":
        return []
    shown_t, shown_n = breast_t_stage(context), breast_n_stage(context)
    out = [_with_stage(context, ("cT", "pT"), t) for t in _NEUTRAL_T_STAGES if shown_t is None or t != shown_t[1]]
    if shown_t is not None:
        out.append(omit_fields(cancer_type, context, ("T",)))
    out += [_with_stage(context, ("cN", "pN"), n) for n in _NEUTRAL_N_STAGES if n != shown_n]
    return out


def neutral_edits_of_case(case, context: dict, ctv_fn, cancer_type: str) -> list[dict]:
    """The ``neutral_context_edits`` of ``context`` whose CTV on this case's anatomy (``ctv_fn(case, ctx)``,
    compared on the CT grid: exact, nothing resampled) is the CTV of ``context`` itself; one per distinct
    context."""
    target = ctv_fn(case, context)
    kept = {}
    for edit in neutral_context_edits(cancer_type, context):
        if np.array_equal(ctv_fn(case, edit), target):
            kept.setdefault(tuple(sorted(edit.items())), edit)
    return list(kept.values())


def prepare_case(case, config: ModelConfig, divisor: int, counterfactual_fn=None, with_variants=True,
                 every_t_stage: bool = False) -> TrainingCase:
    spacing = case.grid.spacing_zyx
    image = prepare(case.hu, spacing, config.target_spacing_zyx, divisor).image
    variants = [(dict(case.context), prepare_label(case.ctv, spacing, config.target_spacing_zyx, divisor))]
    if with_variants and counterfactual_fn is not None:
        for ctx in _counterfactual_contexts(config.cancer_type, case.context, every_t_stage):
            mask = counterfactual_fn(case, ctx)
            variants.append((ctx, prepare_label(mask, spacing, config.target_spacing_zyx, divisor)))
    case_id = f"{getattr(case, 'site', '')}-{getattr(case, 'index', '')}"
    omissions = []
    if with_variants:
        own = dict(case.context)
        omissions = [c for c in (omit_fields(config.cancer_type, own, (f,)) for f in OMITTABLE.get(config.cancer_type, ()))
                     if c != own]
    decisive = []
    if len(variants) > 1:
        own = variants[0][1] > 0.5
        changed = [(label > 0.5) ^ own for _, label in variants[1:]]
        decisive = [torch.stack(changed).any(0)] + changed
    neutral = []
    if with_variants and counterfactual_fn is not None:
        neutral = [neutral_edits_of_case(case, ctx, counterfactual_fn, config.cancer_type) for ctx, _ in variants]
    return TrainingCase(case_id, image, variants, omissions, decisive, neutral)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def translate_in_plane(volume: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Shift ``volume`` [C, Z, Y, X] by (dy, dx) voxels without wrapping; uncovered voxels become 0."""
    if dy == 0 and dx == 0:
        return volume
    out = torch.zeros_like(volume)
    y, x = volume.shape[-2:]
    if abs(dy) >= y or abs(dx) >= x:
        return out
    out[..., max(dy, 0):y + min(dy, 0), max(dx, 0):x + min(dx, 0)] = \
        volume[..., max(-dy, 0):y - max(dy, 0), max(-dx, 0):x - max(dx, 0)]
    return out


@dataclass(frozen=True)
class SampleOptions:
    """How ``_sample`` draws one training slab (the sampling part of ``TrainConfig``)."""

    slab: int
    counterfactual_p: float = 0.0
    omit_p: float = 0.0
    max_shift: int = 0
    coarsen_p: float = 0.0
    cancer_type: str = "breast"
    neutral_twin: bool = False  # also draw a neutral edit of the sample's context (the consistency term)
    omit_in_counterfactuals: bool = False
    neutral_p: float = 0.0  # train under a neutral edit of the context instead of the context itself

    @classmethod
    def from_config(cls, cfg: TrainConfig, cancer_type: str) -> "SampleOptions":
        return cls(cfg.slab_slices, cfg.counterfactual_p, cfg.omit_p, cfg.max_shift, cfg.coarsen_p, cancer_type,
                   cfg.consistency_weight > 0, cfg.omit_in_counterfactuals, cfg.neutral_p)


def counterfactual_omissions(cancer_type: str, own: dict, context: dict) -> list[dict]:
    """``context`` (a counterfactual of ``own``) with one component left out, for each component the
    counterfactual left as it was: leaving out the changed one would ask the image for the real case's
    answer while the target is the counterfactual's."""
    out = []
    for name in OMITTABLE.get(cancer_type, ()):
        dropped = omit_fields(cancer_type, context, (name,))
        gone = set(context) - set(dropped)
        if gone and all(own.get(k) == context[k] for k in gone):
            out.append(dropped)
    return out


def _sample(case: TrainingCase, rng: np.random.Generator, options: SampleOptions):
    """One training slab: (image, label, context, decisive, twin) — decisive marks the context-dependent voxels;
    twin is a neutral edit of the context (same target) when ``options.neutral_twin`` and the case has one,
    else None."""
    variant = 0
    if len(case.variants) > 1 and rng.random() < options.counterfactual_p:
        variant = int(rng.integers(1, len(case.variants)))
        context, label = case.variants[variant]
        if options.omit_in_counterfactuals and rng.random() < options.omit_p:
            # The target stays the counterfactual's, so its decisive voxels (and contrast term) still hold;
            # no neutral twin, since those are edits of the full context.
            choices = counterfactual_omissions(options.cancer_type, case.variants[0][0], context)
            if choices:
                context = choices[int(rng.integers(len(choices)))]
                decisive = case.decisive[variant] if case.decisive else torch.zeros_like(label, dtype=torch.bool)
                return _slab(case, rng, options, label, context, decisive, None)
    else:
        context, label = case.variants[0]
        if case.omissions and rng.random() < options.omit_p:
            context = case.omissions[int(rng.integers(len(case.omissions)))]
            variant = None  # a field is unknown: the image decides, nothing to contrast
    decisive = case.decisive[variant] if case.decisive and variant is not None else torch.zeros_like(label, dtype=torch.bool)
    twin = None
    edits = case.neutral[variant] if variant is not None and case.neutral else []
    if edits and options.neutral_p > 0 and rng.random() < options.neutral_p:
        # Same target under an edit the rules ignore ("PSA 11" for "PSA 13.8"): the exact value is noise.
        twin = context if options.neutral_twin else None
        context = edits[int(rng.integers(len(edits)))]
    elif options.neutral_twin and edits:
        twin = edits[int(rng.integers(len(edits)))]
    return _slab(case, rng, options, label, context, decisive, twin)


def _slab(case: TrainingCase, rng: np.random.Generator, options: SampleOptions, label, context, decisive, twin):
    """The drawn sample's stage coarsening, slab, translation and intensity augmentation."""
    slab = options.slab
    if options.coarsen_p > 0 and rng.random() < options.coarsen_p:
        context = coarsen_stages(options.cancer_type, context)
        twin = coarsen_stages(options.cancer_type, twin) if twin is not None else None
    z = case.image.shape[1]
    if z <= slab:
        start = 0
    else:
        fg = torch.nonzero(label[0].sum((1, 2)) > 0).flatten()
        if len(fg) and rng.random() < 2 / 3:
            centre = int(fg[int(rng.integers(len(fg)))]) + int(rng.integers(-2, 3))
        else:
            centre = int(rng.integers(z))
        start = int(np.clip(centre - slab // 2, 0, z - slab))
    img = case.image[:, start:start + slab]
    lab = label[:, start:start + slab]
    dec = decisive[:, start:start + slab]
    if img.shape[1] < slab:  # short volume: pad the slab
        pad = slab - img.shape[1]
        img = torch.nn.functional.pad(img, (0, 0, 0, 0, 0, pad))
        lab = torch.nn.functional.pad(lab, (0, 0, 0, 0, 0, pad))
        dec = torch.nn.functional.pad(dec, (0, 0, 0, 0, 0, pad))
    if options.max_shift > 0:  # image 0 = -1000 HU after scaling, so the gap is air
        dy, dx = (int(v) for v in rng.integers(-options.max_shift, options.max_shift + 1, size=2))
        img, lab, dec = (translate_in_plane(v, dy, dx) for v in (img, lab, dec))
    # Intensity augmentation (no mirroring: it would contradict the laterality in the context).
    img = img * float(rng.uniform(0.9, 1.1)) + float(rng.uniform(-0.05, 0.05))
    img = img + torch.randn_like(img) * float(rng.uniform(0.0, 0.02))
    return img, lab, context, dec, twin


def context_contrast_loss(logits: torch.Tensor, labels: torch.Tensor, decisive: torch.Tensor) -> torch.Tensor:
    """Mean over samples (with any decisive voxel) of the BCE averaged over that sample's decisive voxels."""
    per_voxel = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    weights = decisive.to(per_voxel.dtype)
    counts = weights.flatten(1).sum(1)
    used = counts > 0
    if not bool(used.any()):
        return logits.sum() * 0.0
    per_sample = (per_voxel * weights).flatten(1).sum(1)[used] / counts[used]
    return per_sample.mean()


def context_consistency_loss(logits: torch.Tensor, twin_logits: torch.Tensor) -> torch.Tensor:
    """Mean over samples of sum((p - q)^2) / (sum(p^2) + sum(q^2)) for the two probability maps: 0 when they
    agree, 1 when they do not overlap; scale-free, so a small CTV counts as much as a large one."""
    p, q = torch.sigmoid(logits).flatten(1), torch.sigmoid(twin_logits).flatten(1)
    return (((p - q) ** 2).sum(1) / ((p ** 2).sum(1) + (q ** 2).sum(1)).clamp_min(1e-6)).mean()


def dice_score(pred: torch.Tensor, target: torch.Tensor) -> float:
    pred, target = pred.bool(), target.bool()
    denom = pred.sum() + target.sum()
    return 1.0 if denom == 0 else float(2 * (pred & target).sum() / denom)


def validate(model: SegmentationModel, cases: list[TrainingCase]) -> float:
    """Mean Dice of whole working-grid volumes (own context) — cheap per-epoch check."""
    if not cases:
        return float("nan")
    model.eval()
    prefer_onednn(model)  # whole volumes, batch of one: PyTorch's own conv3d dispatch would go im2col
    scores = []
    with torch.no_grad():
        for case in cases:
            context, label = case.variants[0]
            logits = model(case.image[None], [context])
            scores.append(dice_score(logits[0] > 0, label > 0.5))
    model.train()
    return float(np.mean(scores))


def make_loss(kind: str):
    if kind == "dicece":
        return DiceCELoss(sigmoid=True, lambda_dice=1.0, lambda_ce=1.0)
    if kind == "dicefocal":
        return DiceFocalLoss(sigmoid=True, lambda_dice=1.0, lambda_focal=1.0)
    raise ValueError(f"loss: unknown {kind!r}; expected 'dicece' or 'dicefocal'")


def train(model: SegmentationModel, train_cases: list[TrainingCase], val_cases: list[TrainingCase],
          cfg: TrainConfig, out_path, *, resume: bool = False, progress: Callable | None = None,
          log: Callable | None = None) -> dict:
    """Train in place; returns {"metrics", "history", "checkpoint_id"}."""
    if not train_cases:
        raise ValueError("train_cases: empty training cohort")
    if cfg.stats_every < 1:
        raise ValueError(f"stats_every: must be >= 1, got {cfg.stats_every}")
    if cfg.lr_schedule not in ("constant", "cosine"):
        raise ValueError(f"lr_schedule: unknown {cfg.lr_schedule!r}; expected 'constant' or 'cosine'")
    if cfg.slab_slices % model.net.divisor:
        raise ValueError(f"slab_slices: {cfg.slab_slices} must be a multiple of {model.net.divisor}")
    log = log or (lambda message: None)
    seed_everything(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    out_path = Path(out_path)
    resume_path = out_path.with_suffix(out_path.suffix + ".resume")
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = make_loss(cfg.loss)
    history, start_epoch = [], 0
    if resume and resume_path.exists():
        state = torch.load(resume_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"], strict=False)
        optimiser.load_state_dict(state["optimiser"])
        history, start_epoch = state["history"], state["epoch"]
        rng = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        log(f"resumed after epoch {start_epoch}")
    standardised = getattr(model.net, "context_norm", None) is not None
    if standardised:
        bank = [ctx for case in train_cases for ctx in
                [v[0] for v in case.variants] + (case.omissions if cfg.omit_p > 0 else [])]
        if cfg.coarsen_p > 0:
            bank += [coarsen_stages(model.config.cancer_type, ctx) for ctx in bank]
        model.set_reference_contexts(bank)
    sampling = SampleOptions.from_config(cfg, model.config.cancer_type)
    total_steps = cfg.epochs * cfg.steps_per_epoch
    t_start, steps_done_here = time.perf_counter(), 0
    model.train()
    ckpt_id = None
    for epoch in range(start_epoch, cfg.epochs):
        losses = []
        for step in range(cfg.steps_per_epoch):
            batch = [_sample(train_cases[int(rng.integers(len(train_cases)))], rng, sampling)
                     for _ in range(cfg.batch_size)]
            global_step = epoch * cfg.steps_per_epoch + step + 1
            if cfg.lr_schedule == "cosine":
                floor = cfg.lr / 20
                lr = floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * (global_step - 1) / max(1, total_steps)))
                for group in optimiser.param_groups:
                    group["lr"] = lr
            if standardised and epoch == start_epoch and step == 0:
                model.refresh_context_statistics()
            images = torch.stack([b[0] for b in batch])
            labels = torch.stack([b[1] for b in batch])
            contexts = [b[2] for b in batch]
            twinned = [i for i, b in enumerate(batch) if b[4] is not None] if cfg.consistency_weight > 0 else []
            if twinned:
                # One LM call for both prompts, one image-encoder pass for both decodes.
                tokens, _ = model.context_tokens(contexts + [batch[i][4] for i in twinned])
                feats = model.net.encode(images)
                logits = model.net.decode(feats, tokens[:len(batch)])
                twin_logits = model.net.decode([f[twinned] for f in feats], tokens[len(batch):])
            else:
                logits = model(images, contexts)
            loss = loss_fn(logits, labels)
            if twinned:
                loss = loss + cfg.consistency_weight * context_consistency_loss(logits[twinned], twin_logits)
            if cfg.contrast_weight > 0:
                loss = loss + cfg.contrast_weight * context_contrast_loss(logits, labels, torch.stack([b[3] for b in batch]))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            # The prompts just moved: the context statistics must follow, at once or every K steps,
            # and always on the epoch's last step since validation and the checkpoint use them.
            if standardised and (global_step % cfg.stats_every == 0 or step == cfg.steps_per_epoch - 1):
                model.refresh_context_statistics()
            losses.append(loss.item())
            steps_done_here += 1
            rate = (time.perf_counter() - t_start) / steps_done_here
            if progress:
                progress({"epoch": epoch + 1, "epochs": cfg.epochs, "step": global_step, "total_steps": total_steps,
                          "loss": losses[-1], "eta_s": rate * (total_steps - global_step)})
        val_dice = validate(model, val_cases)
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_dice": val_dice,
                        "elapsed_s": time.perf_counter() - t_start})
        log(f"epoch {epoch + 1}/{cfg.epochs} loss {np.mean(losses):.4f} val_dice {val_dice:.4f}")
        metrics = {"val_dice": val_dice, "train_loss": float(np.mean(losses)), "epochs_done": epoch + 1}
        ckpt_id = save_checkpoint(model, out_path, cohort=cfg.cohort, metrics=metrics, history=history,
                                  extra={"train_config": {k: v for k, v in cfg.__dict__.items() if k != "cohort"}})
        torch.save({"model": model.saved_state_dict(), "optimiser": optimiser.state_dict(), "history": history,
                    "epoch": epoch + 1, "rng": rng, "torch_rng": torch.get_rng_state()}, resume_path)
    return {"metrics": history[-1] if history else {}, "history": history, "checkpoint_id": ckpt_id}

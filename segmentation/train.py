"""Plain CLI: ``python -m segmentation.train --out model.pt [options]`` trains a model on the synthetic
cohort (fixtures/) and writes a checkpoint; ``manage.py train_model`` wraps ``main``."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m segmentation.train", description=__doc__)
    p.add_argument("--out", required=True, help="checkpoint path to write (.pt)")
    p.add_argument("--cancer-type", default="breast", choices=("breast", "prostate"))
    p.add_argument("--text", default="minilm", choices=("minilm", "hf", "numeric", "none"),
                   help="text encoder: packaged MiniLM, local HF directory, numeric categories, vision-only")
    p.add_argument("--model-path", help="local Hugging Face model directory for --text hf")
    p.add_argument("--tuning", default="multi", choices=("multi", "single", "none", "lora"))
    p.add_argument("--n-prompts", type=int, default=2)
    p.add_argument("--prompt-length", type=int, default=8)
    p.add_argument("--fusion", default="two_way", choices=("two_way", "gated", "concat", "static", "dynamic"))
    p.add_argument("--widths", default="16,16,32,64,128", help="U-Net channels per level, comma separated")
    p.add_argument("--spacing", default="3,1,1", help="working spacing z,y,x in mm")
    p.add_argument("--roi", default="32,64,64", help="inference sliding-window ROI z,y,x (working voxels)")
    p.add_argument("--overlap", type=float, default=0.5)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--steps-per-epoch", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--lr-schedule", default="constant", choices=("constant", "cosine"))
    p.add_argument("--loss", default="dicece", choices=("dicece", "dicefocal"))
    p.add_argument("--slab", type=int, default=32, help="training slab thickness in working slices")
    p.add_argument("--counterfactual-p", type=float, default=0.5)
    p.add_argument("--omit-p", type=float, default=0.2,
                   help="probability of dropping one context component (true target kept)")
    p.add_argument("--omit-in-counterfactuals", action="store_true",
                   help="also drop a component the counterfactual did not change from counterfactual samples "
                        "(their target and contrast term kept), not only from the case's own context")
    p.add_argument("--every-t-counterfactual", action="store_true",
                   help="breast: where T alone decides the nodes, counterfactuals to T1c and T2 or to T3 and T4b "
                        "(one per stage), not only T2 <-> T3")
    p.add_argument("--n-train", type=int, default=24, help="internal training cases")
    p.add_argument("--n-val", type=int, default=6, help="internal validation cases")
    p.add_argument("--case-shape", type=int, default=128,
                   help="in-plane size of the generated synthetic CTs (fixtures shape; 128 = ~3.9 mm pixels)")
    p.add_argument("--data-fraction", type=float, default=1.0, help="use this fraction of the training cases")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--cohort-seed", type=int, default=0, help="fixtures seed")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--context-norm", default="on", choices=("on", "off"),
                   help="standardise each context-token dimension with running statistics over the training "
                        "contexts (networks/llmseg.py ContextStandardiser); 'off' = the first checkpoints' raw [SEG] states")
    p.add_argument("--init-from", help="checkpoint whose image path (U-Net weights) initialises this model, e.g. "
                                       "the vision-only checkpoint, so a multimodal run only learns the context")
    p.add_argument("--finetune-from", help="finished checkpoint of the same config whose weights (all of them) start "
                                           "this run, with a fresh optimiser and schedule")
    p.add_argument("--contrast-weight", type=float, default=0.0,
                   help="extra BCE on the voxels whose target changes with the context (other side, nodes, skin "
                        "band), averaged per sample; 0 = off")
    p.add_argument("--max-shift", type=int, default=0,
                   help="random in-plane translation of each training slab by up to this many working voxels "
                        "(other sites' table position and field of view); 0 = off")
    p.add_argument("--coarsen-p", type=float, default=0.0,
                   help="breast: probability of rendering a sample's T/N stages without their subdivision "
                        "(cT1c -> cT1, N2a -> N2); the CTV rules read only the main stage")
    p.add_argument("--consistency-weight", type=float, default=0.0,
                   help="decode each sample a second time under a neutral edit of its context, where the ground-truth "
                        "CTV stays the same (breast: another T stage, T left out, another positive N stage; prostate: "
                        "PSA x0.8/x1.25, age -3/+3), and pull the two probability maps together with this weight; "
                        "0 = off")
    p.add_argument("--neutral-p", type=float, default=0.0,
                   help="probability of training a sample under one of its neutral edits (same ground-truth CTV: "
                        "breast T/N stages, prostate PSA x0.8/x1.25 and age -3/+3) instead of its own context; "
                        "0 = off")
    p.add_argument("--stats-every", type=int, default=1,
                   help="re-encode the training contexts for the context standardiser every K steps (and at "
                        "every epoch's end); K > 1 trades exactness for speed")
    p.add_argument("--resume", action="store_true", help="continue from OUT.resume if present")
    p.add_argument("--no-progress", action="store_true")
    return p


def _triple(text: str, cast=float) -> tuple:
    values = tuple(cast(v) for v in text.split(","))
    return values


def main(argv=None, stdout=None, progress_callback=None) -> dict:
    """Run the CLI; ``progress_callback(dict)`` also gets every step (epoch, step, total_steps, loss, eta_s)."""
    import torch
    from tqdm import tqdm

    from segmentation.cohort import counterfactual_mask, generate_cases
    from segmentation.model import ModelConfig, SegmentationModel
    from segmentation.training import TrainConfig, prepare_case, seed_everything, train

    out = stdout or sys.stdout
    args = build_parser().parse_args(argv)
    if not 0 < args.data_fraction <= 1:
        raise SystemExit("--data-fraction: must be in (0, 1]")
    if args.threads:
        torch.set_num_threads(args.threads)
    text = {"kind": args.text}
    if args.text in ("minilm", "hf"):
        text.update(tuning=args.tuning, n_prompts=args.n_prompts, prompt_length=args.prompt_length)
    if args.text == "hf":
        if not args.model_path:
            raise SystemExit("--model-path: required with --text hf")
        text["path"] = args.model_path
    config = ModelConfig(cancer_type=args.cancer_type, text_encoder=text, widths=_triple(args.widths, int),
                         fusion=args.fusion, target_spacing_zyx=_triple(args.spacing),
                         roi_size=_triple(args.roi, int), overlap=args.overlap,
                         context_norm=args.context_norm == "on" and args.text != "none")
    seed_everything(args.seed)
    model = SegmentationModel(config, device=args.device)
    init_info = None
    if args.init_from and args.finetune_from:
        raise SystemExit("--init-from and --finetune-from: give one of them")
    # Loaded on --resume too (the .resume state then overwrites the weights) so that every
    # checkpoint of the run records where it started.
    if args.finetune_from:
        from segmentation.model import init_all_from

        try:
            init_info = dict(init_all_from(model, args.finetune_from), mode="finetune")
        except ValueError as exc:
            raise SystemExit(str(exc)) from None
        print(f"all weights initialised from {args.finetune_from} (checkpoint {init_info['checkpoint_id']})",
              file=out, flush=True)
    if args.init_from:
        from segmentation.model import init_image_path_from

        init_info = init_image_path_from(model, args.init_from)
        print(f"image path initialised from {args.init_from} ({init_info['tensors']} tensors, "
              f"checkpoint {init_info['checkpoint_id']})", file=out, flush=True)

    t = time.perf_counter()
    n_used = max(1, int(math.ceil(args.n_train * args.data_fraction)))
    train_raw = generate_cases(args.cancer_type, "internal", "train", n_used, seed=args.cohort_seed,
                               shape=args.case_shape)
    val_raw = generate_cases(args.cancer_type, "internal", "val", args.n_val, seed=args.cohort_seed,
                             shape=args.case_shape) if args.n_val else []
    divisor = model.net.divisor
    cf = counterfactual_mask if model.uses_text else None
    every_t = args.every_t_counterfactual and model.uses_text
    train_cases = [prepare_case(c, config, divisor, cf, every_t_stage=every_t) for c in train_raw]
    val_cases = [prepare_case(c, config, divisor, with_variants=False) for c in val_raw]
    cohort = {"source": "fixtures.generate_case", "cohort_seed": args.cohort_seed, "site": "internal", "case_shape": args.case_shape,
              "train_indices": [getattr(c, "index", None) for c in train_raw],
              "val_indices": [getattr(c, "index", None) for c in val_raw],
              "data_fraction": args.data_fraction, "n_train": len(train_raw), "n_val": len(val_raw)}
    if init_info:
        cohort["finetuned_from" if init_info.get("mode") == "finetune" else "image_path_init"] = init_info
    print(f"cohort ready: {len(train_cases)} train / {len(val_cases)} val cases, working shape "
          f"{tuple(train_cases[0].image.shape[1:])} ({time.perf_counter() - t:.1f}s)", file=out, flush=True)

    cfg = TrainConfig(epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size,
                      lr=args.lr, lr_schedule=args.lr_schedule, loss=args.loss, seed=args.seed, slab_slices=args.slab,
                      counterfactual_p=args.counterfactual_p if model.uses_text else 0.0,
                      omit_p=args.omit_p if model.uses_text else 0.0,
                      contrast_weight=args.contrast_weight if model.uses_text else 0.0, max_shift=args.max_shift,
                      coarsen_p=args.coarsen_p if model.uses_text else 0.0, stats_every=args.stats_every,
                      consistency_weight=args.consistency_weight if model.uses_text else 0.0,
                      neutral_p=args.neutral_p if model.uses_text else 0.0,
                      omit_in_counterfactuals=args.omit_in_counterfactuals and model.uses_text,
                      every_t_counterfactual=every_t, data_fraction=args.data_fraction, cohort=cohort)
    bar = None if args.no_progress else tqdm(total=cfg.epochs * cfg.steps_per_epoch, file=out, desc="training")

    def progress(info):
        if progress_callback is not None:
            progress_callback(info)
        if bar is not None:
            bar.n = info["step"]
            bar.set_postfix(epoch=info["epoch"], loss=f"{info['loss']:.3f}", eta=f"{info['eta_s']:.0f}s")
            bar.refresh()

    def log(message):
        (bar.write if bar is not None else (lambda m: print(m, file=out, flush=True)))(message)

    result = train(model, train_cases, val_cases, cfg, args.out, resume=args.resume, progress=progress, log=log)
    if bar is not None:
        bar.close()
    print(json.dumps({"checkpoint": args.out, "checkpoint_id": result["checkpoint_id"],
                      "final": result["metrics"]}), file=out, flush=True)
    return result


def run_training(out, *, progress=None, stdout=None, **options) -> dict:
    """Programmatic entry (e.g. a worker's training job): keyword options are the CLI's long options
    with underscores (``epochs=2, text="none", data_fraction=0.5``); booleans are flags."""
    argv = ["--out", str(out)]
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value not in (False, None):
            argv += [flag, ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)]
    return main(argv, stdout=stdout, progress_callback=progress)


if __name__ == "__main__":
    main()

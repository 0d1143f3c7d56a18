"""The vLLM entry point (``vllm.general_plugins``: ``segmask_mas = segmask.vllm.plugin:register``).

vLLM calls ``register()`` in each of its processes (front end, engine core, workers) before it builds anything.
It installs five small hooks, each a wrapper that calls vLLM's own function first:

- front end, ``InputProcessor.process_inputs``: resolve each request's segments (``segmask.vllm.requests``) and
  store them in ``SamplingParams.extra_args["segmask_ranges"]``;
- scheduler, ``Scheduler._reserve_prefill_lookahead`` (the last cut vLLM makes to a prefill chunk): a chunk never
  ends inside a segment (chunked prefill stays on, cut only at segment boundaries);
- prefix cache, ``generate_block_hash_extra_keys``: every KV block that overlaps a segment carries a hash of the
  whole segment, so a cached block is reused only when its whole segment matches;
- model runner, ``_build_attention_metadata``: hands the batch's ranges to the attention metadata builder;
- attention: ``CPU_ATTN`` becomes ``segmask.vllm.backend.SegmentCPUAttentionBackend`` (stock kernel, MAS pieces).

Nothing here runs at import time; ``register()`` is idempotent.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from .pieces import cut_at_boundary
from .requests import flat_ranges, ranges_of, request_ranges, segment_cache_keys, XARG_RANGES

_BACKEND = "segmask.vllm.backend.SegmentCPUAttentionBackend"
_MARK = "_segmask_hook"


def register() -> None:
    """Install the hooks (vLLM's ``general_plugins`` entry point)."""
    from vllm.v1.attention.backends.registry import AttentionBackendEnum, register_backend

    register_backend(AttentionBackendEnum.CPU_ATTN, _BACKEND)
    _hook_front_end()
    _hook_scheduler()
    _hook_prefix_cache()
    _hook_runner()


def _wrap(owner: Any, name: str, make: Callable[[Callable], Callable]) -> None:
    original = getattr(owner, name)
    if getattr(original, _MARK, False):
        return
    wrapper = functools.wraps(original)(make(original))
    setattr(wrapper, _MARK, True)
    setattr(owner, name, wrapper)


def _hook_front_end() -> None:
    from vllm.v1.engine.input_processor import InputProcessor

    def make(original):
        def process_inputs(self, *args, **kwargs):
            request = original(self, *args, **kwargs)
            params = request.sampling_params
            if params is not None and request.prompt_token_ids is not None:
                ranges = request_ranges(
                    self.tokenizer, request.prompt_token_ids, params.extra_args,
                    model_path=self.model_config.model,
                    lora_path=request.lora_request.lora_path if request.lora_request else None,
                    max_segment_tokens=_step_tokens(self.vllm_config.scheduler_config))
                params.extra_args = {**(params.extra_args or {}), XARG_RANGES: flat_ranges(ranges)}
            return request
        return process_inputs

    _wrap(InputProcessor, "process_inputs", make)


def _step_tokens(scheduler_config: Any) -> int:
    """The most prompt tokens of one request that one scheduler step takes."""
    limit = scheduler_config.max_num_batched_tokens
    threshold = scheduler_config.long_prefill_token_threshold or 0
    return min(limit, threshold) if threshold > 0 else limit


def _request_ranges(request: Any) -> list[tuple[int, int]]:
    params = getattr(request, "sampling_params", None)
    return ranges_of(params.extra_args) if params is not None and params.extra_args else []


def _hook_scheduler() -> None:
    from vllm.v1.core.sched.scheduler import Scheduler

    def make(original):
        def reserve(self, request, num_computed_tokens, num_new_tokens):
            count = original(self, request, num_computed_tokens, num_new_tokens)
            ranges = _request_ranges(request)
            return cut_at_boundary(num_computed_tokens, count, ranges) if ranges else count
        return reserve

    _wrap(Scheduler, "_reserve_prefill_lookahead", make)


def _hook_prefix_cache() -> None:
    import importlib

    def make(original):
        def extra_keys(request, start_token_idx, end_token_idx, *args, **kwargs):
            keys, next_mm = original(request, start_token_idx, end_token_idx, *args, **kwargs)
            ranges = _request_ranges(request)
            if ranges:
                ours = segment_cache_keys(request.prompt_token_ids, ranges, start_token_idx, end_token_idx)
                if ours:
                    keys = (*(keys or ()), *ours)
            return keys, next_mm
        return extra_keys

    for module in ("vllm.v1.core.kv_cache_utils", "vllm.v1.core.block_pool", "vllm.v1.simple_kv_offload.manager"):
        try:
            owner = importlib.import_module(module)
        except ImportError:
            continue
        if hasattr(owner, "generate_block_hash_extra_keys"):
            _wrap(owner, "generate_block_hash_extra_keys", make)


def _hook_runner() -> None:
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    from .backend import batch_ranges, runner_ranges

    def make(original):
        def build(self, *args, **kwargs):
            with batch_ranges(runner_ranges(self)):
                return original(self, *args, **kwargs)
        return build

    _wrap(GPUModelRunner, "_build_attention_metadata", make)

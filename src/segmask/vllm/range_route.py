"""The opt-in range route: MAS through vLLM's own bidirectional ranges (``mm_req_doc_ranges``) on GPU backends.

Installed by ``segmask.vllm.plugin.register`` only with ``$SEGMASK_VLLM_RANGES=on`` off the CPU platform; the engine
must run the V1 model runner (``VLLM_USE_V2_MODEL_RUNNER=0``) with ``--hf-overrides '{"is_mm_prefix_lm": true}'``,
so that vLLM picks an attention backend whose ``supports_mm_prefix()`` is true (``segmask.vllm.route`` refuses MAS
otherwise). **Verified at CPU level only; not run on a GPU.** Two hooks, each calling vLLM's own code first:

- model runner: the ``CommonAttentionMetadata`` that ``GPUModelRunner._build_attention_metadata`` builds gets the
  batch's segments (set around that method by the plugin's runner hook, ``segmask.vllm.backend.batch_ranges``) in
  ``mm_req_doc_ranges``, as inclusive absolute prompt positions (``segmask.vllm.ranges``), merged with vLLM's own
  image ranges; the scheduler and prefix-cache hooks stay as on CPU (chunks end at segment boundaries, cached blocks
  are keyed by their whole segment);
- FLEX_ATTENTION: vLLM 0.32's direct block-mask build prunes, for causal attention, every KV block that starts after
  the query, so a query never reaches the later blocks of its own range even though the mask function allows them
  (measured on CPU tensors: ``tests/vllm/test_range_route.py``). A batch with ranges is built with vLLM's generic
  block mask (``create_block_mask`` over the same mask function) instead.

TRITON_ATTN and FlashAttention 4 get the same ranges; their kernels were not run here (they need a GPU). A CPU
engine ran FLEX_ATTENTION through this route with its compiled parts and CUDA cache op replaced by torch equivalents
(``tests/vllm/test_range_route.py``); nothing ran on a GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .backend import take_batch_ranges
from .hooks import wrap
from .ranges import merge_doc_ranges, scheduled_doc_ranges

_RUNNER_MODULE = "vllm.v1.worker.gpu_model_runner"
_FLEX_MODULE = "vllm.v1.attention.backends.flex_attention"


def install() -> None:
    """Install both hooks (idempotent; a target this vLLM lacks is an error naming it)."""
    import importlib

    wrap(importlib.import_module(_RUNNER_MODULE), "CommonAttentionMetadata", _make_common)
    wrap(importlib.import_module(_FLEX_MODULE).FlexAttentionMetadataBuilder, "build", _make_flex_build)


def _make_common(original: Callable) -> Callable:
    def common_attention_metadata(*args: Any, **kwargs: Any) -> Any:
        common = original(*args, **kwargs)
        by_row = take_batch_ranges()
        if by_row:
            add_ranges(common, by_row)
        return common
    return common_attention_metadata


def add_ranges(common: Any, by_row: Any) -> Any:
    """Put the segments (row -> half-open ranges) whose queries this step schedules into ``common``'s
    ``mm_req_doc_ranges`` (vLLM's ``CommonAttentionMetadata``, changed in place and returned)."""
    bounds = common.seq_lens_cpu_upper_bound
    if bounds is None:
        raise RuntimeError("segmask: CommonAttentionMetadata has no seq_lens_cpu_upper_bound; the range route needs "
                           "each row's length on the CPU")
    num_reqs = common.num_reqs
    ours = scheduled_doc_ranges(common.query_start_loc_cpu[: num_reqs + 1].tolist(), bounds[:num_reqs].tolist(),
                                by_row)
    if ours:
        common.mm_req_doc_ranges = merge_doc_ranges(common.mm_req_doc_ranges, ours)
    return common


def _make_flex_build(original: Callable) -> Callable:
    def build(self: Any, common_prefix_len: int, common_attn_metadata: Any, fast_build: bool = False) -> Any:
        if not self.direct_build or not any((common_attn_metadata.mm_req_doc_ranges or {}).values()):
            return original(self, common_prefix_len, common_attn_metadata, fast_build)
        self.direct_build = False  # the generic block mask keeps every block the mask function allows
        try:
            return original(self, common_prefix_len, common_attn_metadata, fast_build)
        finally:
            self.direct_build = True
    return build

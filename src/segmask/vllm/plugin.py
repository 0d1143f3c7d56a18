"""The vLLM entry point (``vllm.general_plugins``: ``segmask_mas = segmask.vllm.plugin:register``).

vLLM calls ``register()`` in each of its processes (front end, engine core, workers) before it builds anything.
It first checks vLLM's version (``segmask.vllm.route.check_version``: 0.32.x only), then installs small hooks, each
a wrapper that calls vLLM's own function first:

- front end, ``InputProcessor.__init__``: judge the engine's MAS route (``segmask.vllm.route``) and log it in one
  line; on a route the plugin is not verified on, refuse to start if MAS is asked for at start-up, else serve
  causal requests only;
- front end, ``InputProcessor.process_inputs``: resolve each request's segments (``segmask.vllm.requests``) and
  store them in ``SamplingParams.extra_args["segmask_ranges"]``; on an unverified route a request that resolves to
  MAS is rejected (a ``ValueError`` that is also vLLM's ``VLLMValidationError``: HTTP 400), never answered causally;
- scheduler, ``Scheduler._reserve_prefill_lookahead`` (the last cut vLLM makes to a prefill chunk): a chunk never
  ends inside a segment (chunked prefill stays on, cut only at segment boundaries);
- prefix cache, ``generate_block_hash_extra_keys``: every KV block that overlaps a segment carries a hash of the
  whole segment, so a cached block is reused only when its whole segment matches;
- model runner, ``_build_attention_metadata``: hands the batch's ranges to the attention metadata builder (and
  fails if no builder took them);
- worker, ``WorkerWrapperBase.initialize_from_config``: once the attention backends exist, check that the worker
  really runs the route the front end judged verified;
- attention: ``CPU_ATTN`` becomes ``segmask.vllm.backend.SegmentCPUAttentionBackend`` (stock kernel, MAS pieces);
  off the CPU platform with ``$SEGMASK_VLLM_RANGES=on``, ``segmask.vllm.range_route`` (vLLM's ranges; not run on a GPU).

A hook whose target vLLM no longer has is an error naming it, never a hook silently skipped. ``register()`` is
idempotent.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

from .hooks import import_module as _import
from .hooks import is_hooked, platform
from .hooks import wrap as _wrap
from .pieces import cut_at_boundary
from .ranges import ranges_opted_in
from .requests import XARG_RANGES, flat_ranges, ranges_of, request_ranges, segment_cache_keys
from .route import (
    VERIFIED_BACKEND_CLS,
    Route,
    check_version,
    front_end_route,
    refusal,
    startup_demand,
    startup_refusal,
    worker_problems,
)

_BACKEND = VERIFIED_BACKEND_CLS
_ROUTE_ATTR = "_segmask_route"
# Modules of vLLM 0.32 that import generate_block_hash_extra_keys by name (the prefix-cache hook patches each)
_BLOCK_HASH_SOURCE = "vllm.v1.core.kv_cache_utils"
_BLOCK_HASH_USERS = ("vllm.v1.core.block_pool", "vllm.v1.simple_kv_offload.manager")
_BLOCK_HASH_FN = "generate_block_hash_extra_keys"


def register() -> None:
    """Check vLLM's version and install the hooks (vLLM's ``general_plugins`` entry point)."""
    import vllm

    check_version(getattr(vllm, "__version__", "unknown"))
    from vllm.v1.attention.backends.registry import AttentionBackendEnum, register_backend

    register_backend(AttentionBackendEnum.CPU_ATTN, _BACKEND)
    _hook_front_end()
    _hook_scheduler()
    _hook_prefix_cache()
    _hook_runner()
    _hook_worker()
    if ranges_opted_in() and platform() != "cpu":
        from .range_route import install

        install()


# --- front end -------------------------------------------------------------------------------------------------


def engine_route(vllm_config: Any) -> Route:
    """The MAS route this engine will take, judged from its config (``segmask.vllm.route.front_end_route``)."""
    import vllm
    from vllm.v1.core.sched.scheduler import Scheduler

    scheduler = vllm_config.scheduler_config.get_scheduler_cls()
    backend = vllm_config.attention_config.backend
    model = vllm_config.model_config
    return front_end_route(
        version=vllm.__version__,
        platform=platform(),
        use_mla=bool(getattr(model, "use_mla", False)),
        backend=getattr(backend, "name", None),
        v2_runner=bool(vllm_config.use_v2_model_runner),
        scheduler=getattr(scheduler, "__qualname__", str(scheduler)),
        scheduler_hooked=isinstance(scheduler, type) and issubclass(scheduler, Scheduler)
        and is_hooked(scheduler._reserve_prefill_lookahead),
        ranges=ranges_opted_in(), mm_prefix_lm=bool(getattr(model, "is_mm_prefix_lm", False)),
        sliding_window=model.get_sliding_window())


def _hook_front_end() -> None:
    from vllm.exceptions import VLLMValidationError
    from vllm.logger import init_logger
    from vllm.v1.engine.input_processor import InputProcessor

    logger = init_logger("vllm.segmask")

    class MASRequestError(VLLMValidationError, ValueError):
        """A request the plugin refuses: a ``ValueError`` in-process, HTTP 400 from vLLM's server (a plain
        ``ValueError`` raised here would reach the client as a 500)."""

    def make_init(original):
        def __init__(self, vllm_config, *args, **kwargs):
            original(self, vllm_config, *args, **kwargs)
            route = engine_route(vllm_config)
            logger.info(route.line() if route.verified else
                        route.line() + "; MAS requests are refused (HTTP 400), causal requests are served")
            if not route.verified:
                demand = startup_demand(vllm_config.model_config.model)
                if demand:
                    raise RuntimeError(startup_refusal(route, demand))
            setattr(self, _ROUTE_ATTR, route)
        return __init__

    def make(original):
        def process_inputs(self, *args, **kwargs):
            request = original(self, *args, **kwargs)
            params = request.sampling_params
            if params is not None and request.prompt_token_ids is not None:
                try:
                    ranges = request_ranges(
                        self.tokenizer, request.prompt_token_ids, params.extra_args,
                        model_path=self.model_config.model,
                        lora_path=request.lora_request.lora_path if request.lora_request else None,
                        max_segment_tokens=_step_tokens(self.vllm_config.scheduler_config))
                except ValueError as exc:
                    raise MASRequestError(f"segmask: {exc}", parameter="vllm_xargs") from exc
                route = getattr(self, _ROUTE_ATTR, None)
                if ranges and (route is None or not route.verified):
                    raise MASRequestError(refusal(route) if route is not None else
                                          "segmask: this request asks for MAS but the plugin never judged this "
                                          "engine's route (InputProcessor built before the plugin registered); "
                                          "refused")
                params.extra_args = {**(params.extra_args or {}), XARG_RANGES: flat_ranges(ranges)}
            return request
        return process_inputs

    _wrap(InputProcessor, "__init__", make_init)
    _wrap(InputProcessor, "process_inputs", make)


def _step_tokens(scheduler_config: Any) -> int:
    """The most prompt tokens of one request that one scheduler step takes."""
    limit = scheduler_config.max_num_batched_tokens
    threshold = scheduler_config.long_prefill_token_threshold or 0
    return min(limit, threshold) if threshold > 0 else limit


def _request_ranges(request: Any) -> list[tuple[int, int]]:
    params = getattr(request, "sampling_params", None)
    return ranges_of(params.extra_args) if params is not None and params.extra_args else []


# --- engine core ----------------------------------------------------------------------------------------------


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
    """Wrap ``generate_block_hash_extra_keys`` where it is defined and in every module that imported it by name.

    Fails (``RuntimeError`` naming what is missing) if the function, its expected parameters, or a module known to
    import it cannot be found: a MAS request must never reuse KV blocks computed causally.
    """
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

    purpose = "the prefix-cache hook that keeps MAS and causal KV blocks apart"
    source = _import(_BLOCK_HASH_SOURCE, purpose)
    original = getattr(source, _BLOCK_HASH_FN, None)
    if original is None:
        raise RuntimeError(f"segmask: {_BLOCK_HASH_SOURCE}.{_BLOCK_HASH_FN} not found ({purpose})")
    if not is_hooked(original):
        params = list(inspect.signature(original).parameters)[:3]
        if params != ["request", "start_token_idx", "end_token_idx"]:
            raise RuntimeError(f"segmask: {_BLOCK_HASH_SOURCE}.{_BLOCK_HASH_FN} takes {params}, not the (request, "
                               f"start_token_idx, end_token_idx, ...) the plugin wraps ({purpose})")
    original = getattr(original, "__wrapped__", original)
    for name in _BLOCK_HASH_USERS:  # import them now: each binds the name it imports
        module = _import(name, purpose)
        if not hasattr(module, _BLOCK_HASH_FN):
            raise RuntimeError(f"segmask: {name} no longer imports {_BLOCK_HASH_FN} ({purpose}); "
                               "this vLLM is not one the plugin supports")
    _wrap(source, _BLOCK_HASH_FN, make)
    wrapper = getattr(source, _BLOCK_HASH_FN)
    for name, module in list(sys.modules.items()):  # every loaded module holding the unwrapped function
        if name.startswith("vllm.") and getattr(module, _BLOCK_HASH_FN, None) is original:
            setattr(module, _BLOCK_HASH_FN, wrapper)


# --- worker ---------------------------------------------------------------------------------------------------


def _hook_runner() -> None:
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    from .backend import batch_ranges, runner_ranges

    def make(original):
        def build(self, *args, **kwargs):
            with batch_ranges(runner_ranges(self)):
                return original(self, *args, **kwargs)
        return build

    _wrap(GPUModelRunner, "_build_attention_metadata", make)


def runner_facts(runner: Any) -> dict[str, Any]:
    """What ``segmask.vllm.route.worker_problems`` needs to know about a model runner."""
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    groups = getattr(runner, "attn_groups", None) or []
    classes = [g.backend for per_kv in groups for g in per_kv]
    name = "{0.__module__}.{0.__qualname__}".format
    hooked = isinstance(runner, GPUModelRunner) and is_hooked(type(runner)._build_attention_metadata)
    return {"runner": name(type(runner)), "runner_hooked": hooked, "backends": [name(c) for c in classes],
            "mm_prefix": [name(c) for c in classes if c.supports_mm_prefix()]}


def check_worker(vllm_config: Any, runner: Any) -> None:
    """``RuntimeError`` when the front end judges this engine's route verified but this worker's runner and
    attention backends are not that route (a MAS request would be prefilled causally)."""
    route = engine_route(vllm_config)
    if not route.verified:
        return  # the front end refuses MAS requests
    problems = worker_problems(**runner_facts(runner), by_ranges=route.by_ranges)
    if problems:
        raise RuntimeError(
            f"segmask: the engine was judged to run the verified MAS route ({route.line()}), but this worker does "
            f"not: {'; '.join(problems)}. Refusing to start rather than serve MAS requests causally; exclude the "
            "plugin with VLLM_PLUGINS to run vLLM without MAS.")


def _hook_worker() -> None:
    from vllm.v1.worker.worker_base import WorkerWrapperBase

    def make(original):
        def initialize_from_config(self, *args, **kwargs):
            out = original(self, *args, **kwargs)
            check_worker(self.vllm_config, getattr(self.worker, "model_runner", None))
            return out
        return initialize_from_config

    _wrap(WorkerWrapperBase, "initialize_from_config", make)

"""The ``generate`` integration: the instance overrides ``segmask.enable`` installs so that ``model.generate(...,
segment_ids=...)`` prefills under MAS (listed in ``enable``'s docstring), ``generate_blockers`` (what keeps
``generate`` from prefilling segment by segment) and ``generate_prefill``, the segment route for long prompts. The
route itself is ``segmask.hf.plan.plan_prefill``'s decision.
"""

from __future__ import annotations

from typing import Any

import torch

from ..core.segments import position_ids_from_attention_mask
from .backend import cache_kwarg, layer_kinds, unwrap
from .plan import PrefillPlan, check_route, plan_prefill
from .prefill import run_prefill

GENERATING = "_segmask_generating"
OVERRIDES = ("_validate_model_kwargs", "generate", "create_masks_for_generate", GENERATING)
"""The instance attributes ``install`` sets on the model (``uninstall`` removes them)."""


def install(lm: torch.nn.Module) -> None:
    """Override ``generate``, ``create_masks_for_generate`` and ``_validate_model_kwargs`` of this one transformers
    model (what each does: ``segmask.enable``'s docstring); models without ``_validate_model_kwargs`` are left alone."""
    if not hasattr(lm, "_validate_model_kwargs"):
        return
    stock_validate, stock_generate = lm._validate_model_kwargs, lm.generate
    stock_masks = getattr(lm, "create_masks_for_generate", None)
    if stock_masks is None:
        from transformers.masking_utils import create_masks_for_generate as stock_masks

    def mas_generate(*args: Any, prefill_route: str = "auto", prefill_plan: PrefillPlan | None = None,
                     **kwargs: Any) -> Any:
        """The model's own ``generate``, plus ``prefill_route``: for calls with ``segment_ids``, ``"auto"`` prefills
        segment by segment where ``segmask.hf.plan.plan_prefill`` finds it cheaper (long prompts), ``"dense"``
        always runs one masked forward, ``"segment"`` always chunks (see ``generate_prefill``). ``prefill_plan``:
        the plan of this very prompt (``segmask.generate`` passes the one it made; ``prefill_route`` is then
        unused), else it is planned here."""
        segment_ids = kwargs.get("segment_ids")
        if segment_ids is not None and kwargs.get("past_key_values") is None and kwargs.get("cache") is None:
            input_ids = kwargs.get("input_ids", args[0] if args else None)
            if input_ids is not None and input_ids.ndim == 2:
                plan = prefill_plan or plan_generate(lm, input_ids, segment_ids, kwargs.get("attention_mask"),
                                                     kwargs, prefill_route)
                cache = generate_prefill(lm, input_ids, plan, gen_kwargs=kwargs)
                if cache is not None:
                    kwargs[cache_kwarg(lm)] = cache
            else:
                check_route(prefill_route)
        previous = lm.__dict__.get(GENERATING, False)
        lm.__dict__[GENERATING] = segment_ids is not None
        try:
            return stock_generate(*args, **kwargs)
        finally:
            lm.__dict__[GENERATING] = previous

    def create_masks_for_generate(*args: Any, **kwargs: Any) -> Any:
        mask = kwargs.get("attention_mask")
        if lm.__dict__.get(GENERATING) and (mask is None or mask.ndim == 2):
            return mask
        return stock_masks(*args, **kwargs)

    lm._validate_model_kwargs = lambda model_kwargs: stock_validate(
        {k: v for k, v in model_kwargs.items() if k != "segment_ids"})
    lm.generate = mas_generate
    lm.create_masks_for_generate = create_masks_for_generate


def uninstall(lm: torch.nn.Module) -> None:
    """Remove what ``install`` set: the model's class methods apply again."""
    for name in OVERRIDES:
        lm.__dict__.pop(name, None)


def expand_size(generation_config: Any, gen_kwargs: dict) -> int:
    """Rows per prompt inside ``generate``: beams for beam search, else returned sequences."""
    config = gen_kwargs.get("generation_config") or generation_config
    beams = int(gen_kwargs.get("num_beams") or config.num_beams or 1)
    return beams if beams > 1 else int(gen_kwargs.get("num_return_sequences") or config.num_return_sequences or 1)


def generate_blockers(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                      gen_kwargs: dict) -> list[str]:
    """What keeps ``generate`` with ``gen_kwargs`` from prefilling ``input_ids`` [B, T] segment by segment (the
    ``blocked`` of ``plan_prefill``): settings under which ``generate`` would not use a DynamicCache (another
    ``cache_implementation``, ``use_cache=False``, ``prefill_chunk_size``, assisted decoding, ``inputs_embeds``, pad
    tokens in ``input_ids`` without an ``attention_mask``) and sliding-window layers. Empty: nothing."""
    lm = unwrap(model)
    config = gen_kwargs.get("generation_config") or lm.generation_config
    blockers = {
        "cache_implementation": gen_kwargs.get("cache_implementation") or config.cache_implementation,
        "use_cache=False": gen_kwargs.get("use_cache", config.use_cache) is False,
        "prefill_chunk_size": gen_kwargs.get("prefill_chunk_size") or getattr(config, "prefill_chunk_size", None),
        "assistant_model": gen_kwargs.get("assistant_model") or getattr(config, "prompt_lookup_num_tokens", None),
        "inputs_embeds": gen_kwargs.get("inputs_embeds") is not None,
        "sliding-window layers": set(layer_kinds(lm.config)) != {"full_attention"},
    }
    pad = gen_kwargs.get("pad_token_id", config.pad_token_id)
    if attention_mask is None and pad is not None and bool((input_ids == pad).any()):
        blockers["pad tokens without an attention_mask"] = True  # generate infers the mask; follow its one call
    return [name for name, value in blockers.items() if value]


def plan_generate(model: torch.nn.Module, input_ids: torch.Tensor, segment_ids: Any,
                  attention_mask: torch.Tensor | None, gen_kwargs: dict, route: str = "auto") -> PrefillPlan:
    """``plan_prefill`` of a ``generate`` prompt: ``input_ids`` [B, T] from an empty cache, blocked by
    ``generate_blockers``."""
    return plan_prefill(unwrap(model).config, segment_ids, batch_size=input_ids.shape[0],
                        query_length=input_ids.shape[1], attention_mask=attention_mask, route=route,
                        blocked=generate_blockers(model, input_ids, attention_mask, gen_kwargs),
                        device=input_ids.device)


def generate_prefill(model: torch.nn.Module, input_ids: torch.Tensor, plan: PrefillPlan, *, gen_kwargs: dict) -> Any:
    """The segment route for ``generate``: prefill every call of ``plan`` but the last into a DynamicCache, or return
    None where ``plan`` makes one call (``generate`` then prefills densely).

    ``generate`` given this cache and the whole prompt ``input_ids`` [B, T] prefills only the last chunk (through
    the hook, over the cache) and samples the first new token from its logits, so a trailing bidirectional segment
    stays whole. The cache rows are repeated for beams / returned sequences as ``generate`` expands its inputs.
    """
    from transformers import DynamicCache

    if plan.route != "segment" or len(plan.bounds) <= 2:
        return None
    lm = unwrap(model)
    head = plan.head()
    position_ids = None
    if plan.attention_mask is not None:  # as generate computes them for left padding
        position_ids = position_ids_from_attention_mask(plan.attention_mask)[:, :head.total]
    cache = DynamicCache(config=lm.config)
    with torch.no_grad():
        run_prefill(lm, input_ids[:, :head.total], head, past_key_values=cache, position_ids=position_ids,
                    logits_to_keep=None)
    expand = expand_size(lm.generation_config, gen_kwargs)
    if expand > 1:
        cache.batch_repeat_interleave(expand)
    return cache

"""The single seam into Hugging Face causal LMs: ``enable(model)`` / ``disable(model)``.

After ``enable(model)``, ``model(input_ids=..., attention_mask=..., segment_ids=...)`` and
``model.generate(..., segment_ids=...)`` prefill the prompt under the MAS mask; without ``segment_ids`` the model
is untouched. Nothing global is patched: ``enable`` registers one forward pre-hook on this model's decoder (the
module that builds attention masks), which turns ``segment_ids`` into the attention backend's own mask format
with transformers' ``create_causal_mask`` (sdpa: bool, eager: additive float, flex_attention: BlockMask).

``segment_ids`` [B, L] follows ``attention_mask``: entry j is the segment of absolute position j (tokens already in
the KV cache first). Positions at or after L are causal, so during ``generate`` the prompt's ids keep working for
every decode step, and a forward whose query tokens are all causal runs the vanilla code path exactly.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from .masks import (CAUSAL, as_segment_ids, pad_segment_ids, packed_document_ids, renumber_segments,
                    same_document_mod, same_segment_mod, segment_mask_rows, validate_documents, validate_segment_ids,
                    window_mod)

_STATE_ATTR = "_segmask_state"
_MASKED_BACKENDS = ("sdpa", "eager", "flex_attention")


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """Return the transformers ``PreTrainedModel`` inside ``model`` (itself, or the model inside a PeftModel)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _decoder(model: torch.nn.Module) -> torch.nn.Module:
    """The module that builds attention masks: the base model of a *ForCausalLM, or the model itself."""
    inner = _unwrap(model)
    base = getattr(inner, "base_model", inner)
    return base if isinstance(base, torch.nn.Module) else inner


def _cache_param(fn: Any) -> str:
    return "cache" if "cache" in inspect.signature(fn).parameters else "past_key_values"


def cache_kwarg(model: torch.nn.Module) -> str:
    """The name under which ``model``'s forward takes its KV cache: ``"cache"`` (transformers >= 5.24) or
    ``"past_key_values"`` (earlier 5.x; later versions still accept it, with a deprecation warning)."""
    return _cache_param(_unwrap(model).forward)


def is_enabled(model: torch.nn.Module) -> bool:
    """True if ``enable`` was called on ``model`` (or the model it wraps) and not undone."""
    return hasattr(_decoder(model), _STATE_ATTR)


def enable(model: torch.nn.Module) -> torch.nn.Module:
    """Make ``model`` accept ``segment_ids`` and apply MAS when given; returns ``model``. Idempotent.

    Works on transformers causal LMs (Llama, Qwen2/3, Mistral, Phi-3, Gemma 3 text, GPT-2, ...) and on a PeftModel
    wrapping one. Raises ``ValueError`` for attention backends that cannot take a mask (flash attention).
    """
    decoder = _decoder(model)
    if hasattr(decoder, _STATE_ATTR):
        return model
    check_backend(decoder.config)
    params = list(inspect.signature(decoder.forward).parameters)
    handle = decoder.register_forward_pre_hook(_make_hook(params), with_kwargs=True)
    setattr(decoder, _STATE_ATTR, handle)
    lm = _unwrap(model)
    if hasattr(lm, "_validate_model_kwargs"):
        # generate() rejects keyword arguments its forward signature does not name; segment_ids travels through
        # **kwargs to the decoder hook, so let this one model's generate() accept it.
        stock = lm._validate_model_kwargs
        lm._validate_model_kwargs = lambda model_kwargs: stock(
            {k: v for k, v in model_kwargs.items() if k != "segment_ids"}
        )
        _pass_2d_mask_in_generate(lm)
    return model


def _pass_2d_mask_in_generate(lm: torch.nn.Module) -> None:
    """Wrap this model's ``generate`` for MAS prompts (calls with ``segment_ids``).

    - Route: ``generate(..., prefill_route="auto" | "dense" | "segment")``. Where ``segmask.prefill.choose_route``
      finds segment-wise prefill cheaper (long prompts), every chunk but the last is prefilled segment by segment
      into a DynamicCache first, and ``generate`` prefills the rest over it (``segmask.prefill.generate_prefill``).
    - Masks: with a compilable cache (StaticCache) ``generate`` turns the 2-D padding mask into the backend's causal
      mask before the decoder hook runs, so the hook could not build the MAS mask. While a ``generate`` call carries
      ``segment_ids``, keep the 2-D mask: the hook builds MAS for prefill, the model its own causal mask after."""
    stock_generate = lm.generate
    stock_masks = getattr(lm, "create_masks_for_generate", None)
    if stock_masks is None:
        from transformers.masking_utils import create_masks_for_generate as stock_masks

    def generate(*args: Any, **kwargs: Any) -> Any:
        route = kwargs.pop("prefill_route", "auto")
        segment_ids = kwargs.get("segment_ids")
        if segment_ids is not None and kwargs.get("past_key_values") is None:
            from .prefill import generate_prefill  # segmask.prefill imports this module

            input_ids = kwargs.get("input_ids", args[0] if args else None)
            cache = generate_prefill(lm, input_ids, segment_ids, kwargs.get("attention_mask"), gen_kwargs=kwargs,
                                     route=route)
            if cache is not None:
                kwargs["past_key_values"] = cache
        previous = lm.__dict__.get("_segmask_generating", False)
        lm.__dict__["_segmask_generating"] = segment_ids is not None
        try:
            return stock_generate(*args, **kwargs)
        finally:
            lm.__dict__["_segmask_generating"] = previous

    def create_masks_for_generate(*args: Any, **kwargs: Any) -> Any:
        mask = kwargs.get("attention_mask")
        if lm.__dict__.get("_segmask_generating") and (mask is None or mask.ndim == 2):
            return mask
        return stock_masks(*args, **kwargs)

    lm.generate = generate
    lm.create_masks_for_generate = create_masks_for_generate


def disable(model: torch.nn.Module) -> torch.nn.Module:
    """Undo ``enable``: remove the hook so the model is exactly the stock model again; returns ``model``."""
    decoder = _decoder(model)
    handle = getattr(decoder, _STATE_ATTR, None)
    if handle is not None:
        handle.remove()
        delattr(decoder, _STATE_ATTR)
        for name in ("_validate_model_kwargs", "generate", "create_masks_for_generate", "_segmask_generating"):
            _unwrap(model).__dict__.pop(name, None)
    return model


def check_backend(config: Any) -> None:
    """Raise ``ValueError`` unless the configured attention implementation can take a MAS mask."""
    impl = config._attn_implementation or "eager"
    if impl not in _MASKED_BACKENDS:
        raise ValueError(
            f"attention implementation {impl!r} cannot apply a MAS mask (it takes no arbitrary mask); "
            f"load the model with attn_implementation in {_MASKED_BACKENDS}"
        )


def layer_kinds(config: Any) -> dict[str, int]:
    """Map each attention-layer kind of ``config`` to the index of its first layer.

    Kinds are ``"full_attention"`` and ``"sliding_attention"`` as in transformers' ``config.layer_types``; a config
    without layer types uses one kind for all layers (sliding when ``config.sliding_window`` is set, as Mistral and
    Phi-3 do).
    """
    types = getattr(config, "layer_types", None)
    if not types:
        sliding = getattr(config, "sliding_window", None) is not None
        types = ["sliding_attention" if sliding else "full_attention"]
    kinds: dict[str, int] = {}
    for i, kind in enumerate(types):
        if kind not in ("full_attention", "sliding_attention"):
            raise ValueError(f"layer {i} has attention kind {kind!r}; segmask supports full and sliding attention")
        kinds.setdefault(kind, i)
    return kinds


def _past_length(past_key_values: Any) -> int:
    return 0 if past_key_values is None else int(past_key_values.get_seq_length())


def _check_prefill_boundaries(segment_ids: torch.Tensor, start: int, end: int) -> None:
    """A bidirectional segment must be prefilled whole, in one forward call: [start, end) are the query positions."""
    if start > 0 and segment_ids.shape[1] > start:
        split = (segment_ids[:, start] >= 0) & (segment_ids[:, start] == segment_ids[:, start - 1])
        if split.any():
            b = int(split.nonzero()[0])
            raise ValueError(
                f"sample {b}: segment {int(segment_ids[b, start])} begins in the KV cache and continues in this call; "
                "a segment must be prefilled in one forward call"
            )
    if segment_ids.shape[1] > end:
        split = (segment_ids[:, end - 1] >= 0) & (segment_ids[:, end] == segment_ids[:, end - 1])
        if split.any():
            b = int(split.nonzero()[0])
            raise ValueError(
                f"sample {b}: segment {int(segment_ids[b, end])} continues past the tokens of this forward call; "
                "a segment must be prefilled in one forward call"
            )


def build_mas_masks(
    config: Any,
    segment_ids: torch.Tensor,
    *,
    batch_size: int,
    query_length: int,
    dtype: torch.dtype,
    device: torch.device,
    attention_mask: torch.Tensor | None = None,
    past_key_values: Any = None,
    position_ids: torch.Tensor | None = None,
) -> dict[str, Any]:
    """MAS masks in the backend's own format, one per layer kind (see ``layer_kinds``).

    Args:
        segment_ids: [B, L], entry j = segment of absolute position j; positions >= L are causal.
        attention_mask: [B, past + Q] 2-D padding mask (1 = real) or None.
        past_key_values: the cache the forward call will use, or None.

    Returns:
        {kind: mask} where mask is what transformers' ``create_causal_mask`` returns for the backend (bool
        [B, 1, Q, K] for sdpa, additive float for eager, BlockMask for flex_attention).

    Packed rows (``position_ids`` restarting at 0, no ``attention_mask``, no cache; see ``segmask.packing``) get MAS
    AND the same-sequence (block-diagonal) mask; a BlockMask for flex_attention, never a dense T x T there.
    """
    from transformers.masking_utils import and_masks, create_causal_mask

    check_backend(config)
    past = _past_length(past_key_values)
    total = past + query_length
    max_keys = total if attention_mask is None else max(total, attention_mask.shape[-1])
    kinds = layer_kinds(config)
    if past_key_values is not None:
        for layer_idx in kinds.values():
            kv_length, kv_offset = past_key_values.get_mask_sizes(query_length, layer_idx)
            max_keys = max(max_keys, int(kv_length) + int(kv_offset))
    segment_ids = pad_segment_ids(segment_ids.to(device), max_keys)
    documents = packed_documents(position_ids, attention_mask, past_key_values, batch_size)
    if documents is not None:
        position_ids = None  # transformers would remap q_idx/kv_idx to positions, our mask_mods index tokens
    shape_only = torch.empty((batch_size, query_length, 0), dtype=dtype, device=device)
    masks = {}
    for kind, layer_idx in kinds.items():
        fast = _fast_sdpa_mask(config, kind, segment_ids, attention_mask, past_key_values, documents, past,
                               query_length, layer_idx)
        if fast is not None:
            masks[kind] = fast
            continue
        # create_causal_mask ORs first, then ANDs: (causal | same segment) & window, as mas_mod defines it.
        window = window_mod(config.sliding_window) if kind == "sliding_attention" else None
        if documents is not None:
            same_doc = same_document_mod(documents.to(device))
            window = same_doc if window is None else and_masks(window, same_doc)
        masks[kind] = create_causal_mask(
            config=config,
            inputs_embeds=shape_only,
            attention_mask=attention_mask,
            position_ids=position_ids,
            **{_cache_param(create_causal_mask): past_key_values},
            or_mask_function=same_segment_mod(segment_ids),
            and_mask_function=window,
            layer_idx=layer_idx if past_key_values is not None else None,
        )
    return masks


def _fast_sdpa_mask(config, kind, segment_ids, attention_mask, past_key_values, documents, past, query_length,
                    layer_idx) -> torch.Tensor | None:
    """The sdpa bool mask of a full-attention layer built directly with tensor ops (``segment_mask_rows``, AND the
    same-sequence mask of packed rows), the same mask ``create_causal_mask`` builds through vmap at ~10x the cost;
    None where that equality is not certain (other backends, sliding layers, caches with a key offset)."""
    if config._attn_implementation != "sdpa" or kind != "full_attention":
        return None
    if documents is not None:
        same = documents[:, :, None] == documents[:, None, :]
        return segment_mask_rows(segment_ids, None, end=query_length) & same[:, None].to(segment_ids.device)
    if past_key_values is not None:
        kv_length, kv_offset = (int(v) for v in past_key_values.get_mask_sizes(query_length, layer_idx))
    else:
        kv_length, kv_offset = (past + query_length if attention_mask is None else attention_mask.shape[-1]), 0
    if kv_offset != 0:
        return None
    return segment_mask_rows(segment_ids, attention_mask, start=past, end=past + query_length, kv_length=kv_length)


def packed_documents(position_ids: torch.Tensor | None, attention_mask: torch.Tensor | None, past_key_values: Any,
                     batch_size: int) -> torch.Tensor | None:
    """``document_ids`` [B, T] of a packed batch (``position_ids`` restart inside a row, no ``attention_mask``, no
    cache: transformers' own rule for packed sequences), else None."""
    if position_ids is None or attention_mask is not None or _past_length(past_key_values) > 0:
        return None
    return packed_document_ids(position_ids, batch_size)


def _make_hook(param_names: list[str]):
    def segmask_pre_forward(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        segment_ids = kwargs.pop("segment_ids", None)
        if segment_ids is None:
            return args, kwargs
        kwargs.update(zip(param_names, args))
        _apply_mas(module, segment_ids, kwargs)
        return (), kwargs

    return segmask_pre_forward


def _apply_mas(module: torch.nn.Module, segment_ids: torch.Tensor, kwargs: dict) -> None:
    """Replace ``kwargs["attention_mask"]`` with MAS masks when any query token lies in a segment."""
    config = module.config
    input_ids, embeds = kwargs.get("input_ids"), kwargs.get("inputs_embeds")
    ref = input_ids if input_ids is not None else embeds
    if ref is None:
        raise ValueError("segment_ids given without input_ids or inputs_embeds")
    batch_size, query_length = ref.shape[:2]
    segment_ids = as_segment_ids(segment_ids)
    if segment_ids.ndim != 2 or segment_ids.shape[0] != batch_size:
        raise ValueError(
            f"segment_ids shape {tuple(segment_ids.shape)} does not match the batch of {batch_size} sequences"
        )
    attention_mask = kwargs.get("attention_mask")
    if attention_mask is not None and attention_mask.ndim != 2:
        raise ValueError("segment_ids needs a 2-D attention_mask (or none); got a prepared mask of "
                         f"{attention_mask.ndim} dims")
    # transformers >= 5.2x names the decoder's cache argument `cache` (`past_key_values` before)
    past_key_values = kwargs.get("cache") if kwargs.get("cache") is not None else kwargs.get("past_key_values")
    past = _past_length(past_key_values)
    if past >= segment_ids.shape[1]:
        return  # decode steps after the prompt: causal tokens, the vanilla path bit for bit
    total = past + query_length
    max_positions = getattr(config, "max_position_embeddings", None)
    if max_positions is not None and total > max_positions:
        raise ValueError(f"sequence of {total} tokens exceeds the model's max_position_embeddings {max_positions}")
    segment_ids = segment_ids.to(ref.device)
    padding = attention_mask[:, : segment_ids.shape[1]] if attention_mask is not None else None
    if padding is not None and padding.shape[1] < segment_ids.shape[1]:
        raise ValueError(
            f"segment_ids covers {segment_ids.shape[1]} positions but attention_mask only {padding.shape[1]}"
        )
    documents = packed_documents(kwargs.get("position_ids"), attention_mask, past_key_values, batch_size)
    try:
        validate_segment_ids(segment_ids, padding)
    except ValueError as err:
        if documents is None:
            raise
        raise ValueError(f"{err}; in a packed row segment ids must be unique across its sequences "
                         "(segmask.pack renumbers them)") from None
    if documents is not None:
        validate_documents(pad_segment_ids(segment_ids, total), documents.to(segment_ids.device))
    segment_ids = renumber_segments(segment_ids)  # small ids whatever the caller used
    query_segments = pad_segment_ids(segment_ids, total)[:, past:total]
    if not (query_segments != CAUSAL).any() and documents is None:
        return  # decode steps and causal-only inputs: the vanilla path, bit for bit
    _check_prefill_boundaries(segment_ids, past, total)
    dtype = embeds.dtype if embeds is not None else module.get_input_embeddings().weight.dtype
    masks = build_mas_masks(
        config,
        segment_ids,
        batch_size=batch_size,
        query_length=query_length,
        dtype=dtype,
        device=ref.device,
        attention_mask=attention_mask,
        past_key_values=past_key_values,
        position_ids=kwargs.get("position_ids"),
    )
    kwargs["attention_mask"] = next(iter(masks.values())) if len(masks) == 1 else masks

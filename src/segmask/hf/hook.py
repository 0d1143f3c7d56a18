"""The single seam into Hugging Face causal LMs: ``enable(model)`` / ``disable(model)`` and the forward pre-hook they
register on the model's decoder (``segment_ids`` in, MAS masks out).

After ``enable(model)``, ``model(input_ids=..., attention_mask=..., segment_ids=...)`` and
transformers' ``generate`` with ``segment_ids`` prefill the prompt under the MAS mask; without ``segment_ids`` the model
runs its stock code. Nothing global is patched; only this model instance changes (``enable``'s docstring lists
every change).

``segment_ids`` [B, L] follows ``attention_mask``: entry j is the segment of absolute position j (tokens already in
the KV cache first). Positions at or after L are causal, so during ``generate`` the prompt's ids keep working for
every decode step, and a forward whose query tokens are all causal runs the vanilla code path exactly.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from . import generate
from .attention import build_mas_masks, packed_documents
from .backend import STATE_ATTR, check_backend, decoder, past_length, unwrap
from .plan import PrefillPlan, plan_prefill


def enable(model: torch.nn.Module) -> torch.nn.Module:
    """Make ``model`` accept ``segment_ids`` and apply MAS when given; returns ``model``. Idempotent.

    Works on transformers causal LMs (Llama, Qwen2/3, Mistral, Phi-3, Gemma 3 text, GPT-2, ...) and on a PeftModel
    wrapping one. Raises ``ValueError`` for attention backends that cannot take a mask (flash attention).

    What it changes on the model, all undone by ``disable``:

    - the decoder (the module that builds attention masks, ``backend.decoder``) gets one forward pre-hook
      (``hook.make_hook``): it pops ``segment_ids`` (ids, or a ``segmask.hf.plan.PrefillPlan``) and turns them into
      the backend's mask format (sdpa: bool, eager: additive float, flex_attention: BlockMask) with transformers'
      ``create_causal_mask``; its handle is stored in the decoder attribute ``_segmask_state``
      (``backend.STATE_ATTR``);
    - the transformers model (inside a PeftModel, if wrapped) gets three instance attributes that shadow its class
      methods (``generate.install``): ``generate`` (accepts ``prefill_route`` and ``prefill_plan``, may prefill
      long prompts segment by segment), ``create_masks_for_generate`` (keeps the 2-D mask while a MAS prompt is
      generated) and ``_validate_model_kwargs`` (lets ``segment_ids`` through); during a MAS ``generate`` call a flag
      ``_segmask_generating`` sits in its ``__dict__``.
    """
    mask_builder = decoder(model)
    if hasattr(mask_builder, STATE_ATTR):
        return model
    check_backend(mask_builder.config)
    params = list(inspect.signature(mask_builder.forward).parameters)
    handle = mask_builder.register_forward_pre_hook(make_hook(params), with_kwargs=True)
    setattr(mask_builder, STATE_ATTR, handle)
    generate.install(unwrap(model))
    return model


def disable(model: torch.nn.Module) -> torch.nn.Module:
    """Undo ``enable``: remove the hook and the instance overrides, so the model is exactly the stock model again;
    returns ``model``."""
    mask_builder = decoder(model)
    handle = getattr(mask_builder, STATE_ATTR, None)
    if handle is not None:
        handle.remove()
        delattr(mask_builder, STATE_ATTR)
        generate.uninstall(unwrap(model))
    return model


def make_hook(param_names: list[str]):
    """The pre-hook for a decoder whose forward takes ``param_names`` positionally: it pops ``segment_ids`` from the
    call and, when given, replaces ``attention_mask`` by the MAS masks (``apply_mas``)."""

    def segmask_pre_forward(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        segment_ids = kwargs.pop("segment_ids", None)
        if segment_ids is None:
            return args, kwargs
        kwargs.update(zip(param_names, args))
        apply_mas(module, segment_ids, kwargs)
        return (), kwargs

    return segmask_pre_forward


def apply_mas(module: torch.nn.Module, segment_ids: Any, kwargs: dict) -> None:
    """Replace ``kwargs["attention_mask"]`` with MAS masks when any query token lies in a segment.

    ``segment_ids`` is either the caller's ids [B, L] (``model(..., segment_ids=ids)``, transformers' ``generate``),
    planned here by ``segmask.hf.plan.plan_prefill``, or the ``PrefillPlan`` that ``segmask.hf.prefill.run_prefill``
    passes for each of its forward calls, already checked: it is only matched against the call.
    """
    input_ids, embeds = kwargs.get("input_ids"), kwargs.get("inputs_embeds")
    ref = input_ids if input_ids is not None else embeds
    if ref is None:
        raise ValueError("segment_ids given without input_ids or inputs_embeds")
    batch_size, query_length = ref.shape[:2]
    attention_mask = kwargs.get("attention_mask")
    # transformers >= 5.2x names the decoder's cache argument `cache` (`past_key_values` before)
    past_key_values = kwargs.get("cache") if kwargs.get("cache") is not None else kwargs.get("past_key_values")
    past = past_length(past_key_values)
    total = past + query_length
    documents = packed_documents(kwargs.get("position_ids"), attention_mask, past_key_values, batch_size)
    if isinstance(segment_ids, PrefillPlan):
        plan = segment_ids
        plan.check_call(batch_size, past, total)
    else:
        plan = plan_prefill(module.config, segment_ids, batch_size=batch_size, query_length=query_length, past=past,
                            attention_mask=attention_mask, route="dense", documents=documents, device=ref.device)
    if not plan.has_segments(past, total) and documents is None:
        return  # decode steps and causal-only inputs: the vanilla path, bit for bit
    dtype = embeds.dtype if embeds is not None else module.get_input_embeddings().weight.dtype
    masks = build_mas_masks(
        module.config,
        plan.segment_ids,
        batch_size=batch_size,
        query_length=query_length,
        dtype=dtype,
        device=ref.device,
        attention_mask=attention_mask,
        past_key_values=past_key_values,
        position_ids=kwargs.get("position_ids"),
    )
    kwargs["attention_mask"] = next(iter(masks.values())) if len(masks) == 1 else masks

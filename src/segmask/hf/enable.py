"""The single seam into Hugging Face causal LMs: ``enable(model)`` / ``disable(model)``.

After ``enable(model)``, ``model(input_ids=..., attention_mask=..., segment_ids=...)`` and
``model.generate(..., segment_ids=...)`` prefill the prompt under the MAS mask; without ``segment_ids`` the model
runs its stock code. Nothing global is patched; only this model instance changes (``enable``'s docstring lists
every change).
"""

from __future__ import annotations

import inspect

import torch

from . import generate
from .backend import STATE_ATTR, check_backend, decoder, unwrap
from .hook import make_hook


def enable(model: torch.nn.Module) -> torch.nn.Module:
    """Make ``model`` accept ``segment_ids`` and apply MAS when given; returns ``model``. Idempotent.

    Works on transformers causal LMs (Llama, Qwen2/3, Mistral, Phi-3, Gemma 3 text, GPT-2, ...) and on a PeftModel
    wrapping one. Raises ``ValueError`` for attention backends that cannot take a mask (flash attention).

    What it changes on the model, all undone by ``disable``:

    - the decoder (the module that builds attention masks, ``backend.decoder``) gets one forward pre-hook
      (``hook.make_hook``): it pops ``segment_ids`` and turns them into the backend's mask format (sdpa: bool, eager:
      additive float, flex_attention: BlockMask) with transformers' ``create_causal_mask``; its handle is stored in
      the decoder attribute ``_segmask_state`` (``backend.STATE_ATTR``);
    - the transformers model (inside a PeftModel, if wrapped) gets three instance attributes that shadow its class
      methods (``generate.install``): ``generate`` (accepts ``prefill_route``, may prefill long prompts segment by
      segment), ``create_masks_for_generate`` (keeps the 2-D mask while a MAS prompt is generated) and
      ``_validate_model_kwargs`` (lets ``segment_ids`` through); during a MAS ``generate`` call a flag
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

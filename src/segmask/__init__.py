"""segmask: Masked Attention by Segment (MAS) for Hugging Face causal LMs.

During prefill, query q may attend key k iff k <= q or q and k lie in the same prompt segment; generation stays
causal. Quick start:

    >>> import segmask
    >>> model, tok = segmask.load_model()                     # SmolLM2-135M-Instruct, embedded, offline
    >>> segmask.enable(model)
    >>> batch = segmask.encode_chat(tok, [{"role": "user", "content": "Name a colour."}])
    >>> out = model.generate(**batch, max_new_tokens=16)      # MAS prefill, causal decoding

Heavy imports (transformers, peft) happen inside the functions that need them.
"""

from .chat import encode_chat
from .conversation import Conversation
from .generation import generate
from .hf import build_mas_masks, disable, enable, is_enabled
from .masks import CAUSAL, mas_mod, segment_mask, validate_segment_ids
from .models import DEFAULT_MODEL, load_model
from .packing import PackedRow, collate_packed, pack
from .prefill import mas_prefill
from .prefix_cache import PrefixCache
from .segments import Batch, Example, Piece, collate, encode_pieces, encode_spans, from_segment_ids
from .templates import encode_commonsense

__version__ = "0.1.0"

__all__ = [
    "CAUSAL",
    "DEFAULT_MODEL",
    "Batch",
    "Conversation",
    "Example",
    "PackedRow",
    "Piece",
    "PrefixCache",
    "build_mas_masks",
    "collate",
    "collate_packed",
    "disable",
    "enable",
    "encode_chat",
    "encode_commonsense",
    "encode_pieces",
    "encode_spans",
    "from_segment_ids",
    "generate",
    "is_enabled",
    "load_model",
    "mas_mod",
    "mas_prefill",
    "pack",
    "segment_mask",
    "validate_segment_ids",
]

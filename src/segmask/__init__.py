"""segmask: Masked Attention by Segment (MAS) for Hugging Face causal LMs.

During prefill, query q may attend key k iff k <= q or q and k lie in the same prompt segment; generation stays
causal. Quick start:

    >>> import segmask
    >>> model, tok = segmask.load_model()                     # SmolLM2-135M-Instruct, embedded, offline
    >>> segmask.enable(model)
    >>> batch = segmask.encode_chat(tok, [{"role": "user", "content": "Name a colour."}])
    >>> out = segmask.generate(model, batch, tokenizer=tok, max_new_tokens=16)   # MAS prefill, causal decoding

Heavy imports (transformers, peft) happen inside the functions that need them. The package is laid out by layer,
each importing only the layers before it: ``core`` -> ``hf`` -> ``generation`` -> ``train`` / ``eval`` / ``serve`` /
``viz`` -> ``cli`` (README: "How the code is laid out"). This module re-exports the public names.
"""

from .core.chat import encode_chat
from .core.masks import CAUSAL, mas_mod, segment_mask, validate_segment_ids
from .core.packing import PackedRow, collate_packed, pack
from .core.recipe import DEFAULT_MODEL, VERSION
from .core.segments import Batch, Example, Piece, collate, encode_pieces, encode_spans, from_segment_ids
from .core.templates import encode_commonsense
from .generation.batch import generate
from .generation.conversation import Conversation
from .generation.prefix_cache import PrefixCache
from .hf.attention import build_mas_masks
from .hf.backend import is_enabled
from .hf.hook import disable, enable
from .hf.models import load_model
from .hf.prefill import mas_prefill

__version__ = VERSION

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

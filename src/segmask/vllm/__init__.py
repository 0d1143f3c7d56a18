"""segmask.vllm: serve MAS through vLLM (a ``vllm.general_plugins`` plugin; ``pip install segmask[vllm]``).

With the plugin installed, vLLM's OpenAI server (``python -m vllm.entrypoints.openai.api_server --model MODEL``;
``vllm serve`` with the ``vllm`` wheel) prefills each system / developer / user / tool message of a chat request as
one bidirectional segment, exactly the segments ``segmask.encode_chat`` makes, and decodes causally. Which requests
get MAS: ``segmask.vllm.requests`` (``$SEGMASK_VLLM_MAS``, an adapter's ``segmask.json``, or per request
``vllm_xargs``/``SamplingParams.extra_args``: ``segmask_mas``, ``segmask_ranges``). Where MAS may run (vLLM 0.32 on
the CPU platform; elsewhere MAS requests are refused, never answered causally): ``segmask.vllm.route``. How vLLM is
hooked: ``segmask.vllm.plugin``. The pure parts import no vLLM and work alone:

    >>> from segmask.vllm import find_segments
    >>> find_segments(tokenizer, tokenizer.apply_chat_template(messages, add_generation_prompt=True))
    [(0, 21), (21, 28)]

No other segmask module imports this package.
"""

from .pieces import PiecePlan, cut_at_boundary, split_pieces
from .requests import MAS_ENV, XARG_MAS, XARG_RANGES, request_ranges, segment_cache_keys
from .segments import find_segments, segment_ids_from_ranges, turn_headers, validate_ranges

__all__ = [
    "MAS_ENV",
    "XARG_MAS",
    "XARG_RANGES",
    "PiecePlan",
    "cut_at_boundary",
    "find_segments",
    "request_ranges",
    "segment_cache_keys",
    "segment_ids_from_ranges",
    "split_pieces",
    "turn_headers",
    "validate_ranges",
]

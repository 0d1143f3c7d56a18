"""Generation with MAS prefill (layer 3): batched ``generate`` with prefix reuse, multi-turn ``Conversation``, the
``PrefixCache`` of leading-segment KV, and the step-by-step decode loop with its sampler (used by the server).
"""

from .batch import Generation, generate
from .conversation import Conversation
from .prefix_cache import PrefixCache

__all__ = ["Conversation", "Generation", "PrefixCache", "generate"]

"""The one seam into Hugging Face models (layer 2, above ``segmask.core``).

Modules: ``backend`` (what segmask asks of a model), ``attention`` (MAS masks in the backend's format), ``hook``
(``enable``/``disable`` and the decoder pre-hook), ``generate`` (the ``generate`` integration), ``prefill`` (dense
and segment-wise prefill routes), ``models`` (loading the embedded and Hugging Face models).
"""

from .attention import build_mas_masks
from .backend import cache_kwarg, check_backend, is_enabled, layer_kinds
from .hook import disable, enable
from .prefill import mas_prefill

__all__ = ["build_mas_masks", "cache_kwarg", "check_backend", "disable", "enable", "is_enabled", "layer_kinds",
           "mas_prefill"]

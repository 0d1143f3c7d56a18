"""Pictures of segments, masks and attention (layer 4): ``ascii`` for terminals, ``plots`` (matplotlib) for figures."""

from .ascii import ascii_mask, describe_segments

__all__ = ["ascii_mask", "describe_segments"]

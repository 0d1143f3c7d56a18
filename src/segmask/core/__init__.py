"""Pure torch + tokenizer, no model (layer 1): masks, segment runs, segments and templates, chat prompts, packing,
commonsense questions, and the recipe vocabulary.

Shape notation, used by every docstring in segmask: B batch, T sequence (prompt) length, Q query length, K key
length, P tokens already in the KV cache (a cached prefix), V vocabulary, L layers, H_kv key-value heads, D head
size. Masks are ``torch.bool``, True at ``[b, 0, q, k]``: query q may attend key k. Segment ids: s >= 0 marks a
bidirectional prompt segment, -1 (``CAUSAL``) a causal token (answer, generation header, padding).
"""

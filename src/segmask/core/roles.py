"""Which chat messages are MAS segments: the role vocabulary shared by ``segmask.core.chat`` (prompts built from
messages) and the vLLM plugin (``segmask.vllm.segments``, segments found in rendered token ids). Pure constants, no
torch, so the plugin's pure part can import it.

    >>> "user" in SEGMENT_ROLES, "assistant" in CAUSAL_ROLES
    (True, True)
"""

SEGMENT_ROLES = ("system", "developer", "user", "tool")
"""Roles whose message (role header and end-of-turn text included) is one bidirectional segment."""
CAUSAL_ROLES = ("assistant",)
"""Roles whose message stays causal (as does the generation prompt)."""
PROBE = "\u2063"
"""Invisible separator: the content of the probe messages rendered to find a template's turn boundaries; never in
real prompts."""

"""Chat segments found in a prompt's token ids: the pure part of the vLLM plugin (no vLLM import).

A server sees a chat request only as the token ids the chat template rendered. ``find_segments`` finds in them the
same bidirectional segments ``segmask.encode_chat`` makes from the messages: one per system / developer / user /
tool message, from the message's role header to the next message's header (its end-of-turn text included);
assistant turns and the generation prompt stay causal. Each role's header is learnt once per tokenizer by rendering
a probe message through the tokenizer's own chat template, so no token id is hard-coded.

Ranges are half-open token positions ``(start, end)``, in order, never overlapping:

    >>> ids = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    >>> find_segments(tokenizer, ids)
    [(0, 21), (21, 28)]      # the template's default system turn, then the user turn; the assistant header is causal

``segment_ids_from_ranges`` turns ranges into the per-token ``segment_ids`` list segmask's masks take (-1 causal).
A prompt holding no chat header (a plain completion prompt) gets no segments: it stays causal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..core.roles import CAUSAL_ROLES, PROBE, SEGMENT_ROLES

_PROBE_CONTENTS = (PROBE, "\n\n", " a", "a.", "<")  # contents whose first characters tokenize differently
_HEADERS_ATTR = "_segmask_turn_headers"

Range = tuple[int, int]


def turn_headers(tokenizer: Any) -> dict[tuple[int, ...], bool]:
    """Token ids of each role's turn header -> True when that role's turn is a bidirectional segment.

    Learnt by rendering ``[system, role]`` probe conversations (the role's turn is what the second message adds)
    and the generation prompt; roles the template refuses are skipped. Cached on the tokenizer.
    """
    cached = getattr(tokenizer, _HEADERS_ATTR, None)
    if cached is not None:
        return cached
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("tokenizer has no chat template: segments cannot be found from chat headers")
    headers: dict[tuple[int, ...], bool] = {}
    for role in SEGMENT_ROLES + CAUSAL_ROLES:
        header = _role_header(tokenizer, role)
        if header:
            headers.setdefault(header, role in SEGMENT_ROLES)
    generation = _generation_header(tokenizer)
    if generation:
        headers.setdefault(generation, False)
    if not any(headers.values()):
        raise ValueError("could not learn any segment role's header from the chat template")
    try:
        setattr(tokenizer, _HEADERS_ATTR, headers)
    except AttributeError:  # a tokenizer that takes no new attributes: learn again next time
        pass
    return headers


def find_segments(tokenizer: Any, token_ids: Sequence[int]) -> list[Range]:
    """Half-open ``(start, end)`` token ranges of the segment turns in ``token_ids`` (a rendered chat prompt).

    A turn starts at its role header and ends where the next header starts (or at the end of the prompt). Tokens
    before the first header (e.g. a BOS) belong to the first turn, as in ``encode_chat``.
    """
    headers = turn_headers(tokenizer)
    ids = list(token_ids)
    starts = _header_starts(ids, headers)
    ranges: list[Range] = []
    for i, (pos, segment) in enumerate(starts):
        if not segment:
            continue
        start = 0 if i == 0 else pos
        end = starts[i + 1][0] if i + 1 < len(starts) else len(ids)
        ranges.append((start, end))
    return ranges


def segment_ids_from_ranges(ranges: Sequence[Range], length: int) -> list[int]:
    """Per-token segment ids (segment i on its range, -1 elsewhere) for a prompt of ``length`` tokens."""
    ids = [-1] * length
    for i, (start, end) in enumerate(validate_ranges(ranges, length)):
        ids[start:end] = [i] * (end - start)
    return ids


def validate_ranges(ranges: Any, length: int) -> list[Range]:
    """``ranges`` as a list of int pairs; ``ValueError`` naming the bad range unless sorted, disjoint, non-empty and
    inside ``[0, length)``. Accepts pairs or the flat list ``[s0, e0, s1, e1, ...]`` that ``vllm_xargs`` can carry."""
    if ranges and not isinstance(ranges[0], (list, tuple)):
        if len(ranges) % 2:
            raise ValueError(f"segment ranges: a flat list needs an even number of ints, got {len(ranges)}")
        ranges = list(zip(ranges[0::2], ranges[1::2]))
    out: list[Range] = []
    previous_end = 0
    for i, pair in enumerate(ranges):
        if len(pair) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) for x in pair):
            raise ValueError(f"segment range {i}: expected two ints (start, end), got {pair!r:.80}")
        start, end = pair
        if not previous_end <= start < end <= length:
            raise ValueError(f"segment range {i}: ({start}, {end}) must be non-empty, sorted, disjoint and inside a "
                             f"prompt of {length} tokens")
        out.append((start, end))
        previous_end = end
    return out


def _header_starts(ids: list[int], headers: dict[tuple[int, ...], bool]) -> list[tuple[int, bool]]:
    """(position, is_segment) of each header occurrence in ``ids``, in order (longest header wins at a tie)."""
    by_first: dict[int, list[tuple[int, ...]]] = {}
    for header in sorted(headers, key=len, reverse=True):
        by_first.setdefault(header[0], []).append(header)
    starts: list[tuple[int, bool]] = []
    pos = 0
    while pos < len(ids):
        match = next((h for h in by_first.get(ids[pos], ()) if tuple(ids[pos: pos + len(h)]) == h), None)
        if match is None:
            pos += 1
            continue
        starts.append((pos, headers[match]))
        pos += len(match)
    return starts


def _role_header(tokenizer: Any, role: str) -> tuple[int, ...]:
    """The tokens every ``role`` turn starts with, whatever its content: the common token prefix of the turn
    rendered with several probe contents (a header's last token can merge with the content, e.g. "\\n" + "\\n\\n")."""
    turns = [_turn_text(tokenizer, role, content) for content in _PROBE_CONTENTS]
    if any(turn is None for turn in turns):
        return ()
    encoded = [_encode(tokenizer, turn) for turn in turns]
    common = 0
    while all(len(ids) > common and ids[common] == encoded[0][common] for ids in encoded):
        common += 1
    return encoded[0][:common]


def _turn_text(tokenizer: Any, role: str, content: str) -> str | None:
    """The text one ``role`` message with ``content`` adds after a system message (the system turn itself for
    ``role == "system"``); None when the template refuses it."""
    system = [{"role": "system", "content": PROBE}]
    try:
        if role == "system":
            return _render(tokenizer, [{"role": "system", "content": content}], False)
        before = _render(tokenizer, system, False)
        after = _render(tokenizer, system + [{"role": role, "content": content}], False)
    except Exception:  # the template refuses this role (or a system message): it has no such header
        return None
    return after[len(before):] if after.startswith(before) else None


def _generation_header(tokenizer: Any) -> tuple[int, ...]:
    messages = [{"role": "user", "content": PROBE}]
    try:
        plain, prompt = _render(tokenizer, messages, False), _render(tokenizer, messages, True)
    except Exception:
        return ()
    return _encode(tokenizer, prompt[len(plain):]) if prompt.startswith(plain) else ()


def _render(tokenizer: Any, messages: list[dict], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def _encode(tokenizer: Any, text: str) -> tuple[int, ...]:
    return tuple(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else ()

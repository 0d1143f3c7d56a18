"""Chat conversations -> MAS segments, using the tokenizer's own chat template.

Each system / developer / user / tool message, with its role header and end-of-turn text exactly as the template
renders it, is one bidirectional segment; assistant messages and the generation prompt are causal. Boundaries come
from rendering the conversation prefix by prefix (message i's text is what rendering ``messages[:i+1]`` adds to
``messages[:i]``), so any template works and no token id is hard-coded. That is n renderings for n messages, each
of length up to n: quadratic in the message count (about 0.5 s for 256 short messages on one CPU core); callers
that take conversations from untrusted clients cap the count (``segmask serve``: ``max_messages``).

    >>> batch = encode_chat(tokenizer, [{"role": "system", "content": "Be brief."},
    ...                                 {"role": "user", "content": "Capital of France?"}])
    >>> batch["segment_ids"]   # [1, T]: 0 on the system turn, 1 on the user turn, -1 on "<|im_start|>assistant\\n"

A final assistant message (with ``add_generation_prompt`` off or on) becomes the answer: causal, with ``labels``
on its content and end-of-turn tokens only; with ``final_answer=False`` it is context instead, and the generation
prompt follows it (what a server continuing the chat needs).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .recipe import check_choice
from .roles import CAUSAL_ROLES, PROBE, SEGMENT_ROLES
from .segments import Batch, Example, Piece, collate, encode_pieces, pad_token_id


def encode_chat(
    tokenizer: Any,
    conversations: Sequence[dict] | Sequence[Sequence[dict]],
    add_generation_prompt: bool = True,
    *,
    padding_side: str = "left",
    max_length: int | None = None,
    template_kwargs: dict | None = None,
    final_answer: bool = True,
) -> Batch:
    """Encode one conversation or a list of them into a padded ``Batch``.

    Args:
        tokenizer: a Hugging Face tokenizer with a chat template.
        conversations: a list of ``{"role", "content"}`` messages, or a list of such lists.
        add_generation_prompt: end the prompt with the template's assistant header (causal). Ignored for a
            conversation whose last message is from the assistant: that message is the labelled answer.
            (A conversation of one assistant message is context, not an answer: the header follows it.)
        padding_side: ``"left"`` (generation) or ``"right"`` (training).
        max_length: raise ``ValueError`` if a conversation is longer (defaults to the tokenizer's limit when sane).
        template_kwargs: extra keyword arguments for ``apply_chat_template`` (e.g. ``enable_thinking``).
        final_answer: False: a final assistant message is context like any earlier turn, no labels, and
            ``add_generation_prompt`` opens a new assistant turn after it.

    Returns:
        ``Batch`` with ``input_ids``, ``attention_mask``, ``segment_ids`` [B, T] (+ ``labels`` when answers given).
    """
    convs = _as_conversations(conversations)
    examples = [
        chat_example(tokenizer, conv, add_generation_prompt, template_kwargs=template_kwargs, index=i,
                     final_answer=final_answer)
        for i, conv in enumerate(convs)
    ]
    if max_length is None:
        limit = getattr(tokenizer, "model_max_length", None)
        max_length = limit if isinstance(limit, int) and limit < 10**7 else None
    return collate(examples, pad_token_id=pad_token_id(tokenizer), padding_side=padding_side, max_length=max_length)


def _as_conversations(conversations: Any) -> list[list[dict]]:
    if isinstance(conversations, dict) or not conversations:
        raise ValueError("empty conversation: give a list of {'role', 'content'} messages (or a list of such lists)")
    if isinstance(conversations[0], dict):
        return [list(conversations)]
    return [list(c) for c in conversations]


def chat_example(
    tokenizer: Any,
    messages: Sequence[dict],
    add_generation_prompt: bool = True,
    *,
    template_kwargs: dict | None = None,
    index: int = 0,
    final_answer: bool = True,
) -> Example:
    """Encode one conversation (see ``encode_chat``); ``index`` names the sample in error messages."""
    return encode_pieces(tokenizer, chat_pieces(tokenizer, messages, add_generation_prompt,
                                                template_kwargs=template_kwargs, index=index,
                                                final_answer=final_answer))


def chat_pieces(
    tokenizer: Any,
    messages: Sequence[dict],
    add_generation_prompt: bool = True,
    *,
    template_kwargs: dict | None = None,
    index: int = 0,
    final_answer: bool = True,
) -> list[Piece]:
    """Split the rendered conversation into ``Piece``s: one segment per non-assistant message (see ``encode_chat``
    for the arguments). Renders ``len(messages) + 2`` prefixes of the conversation."""
    validate_messages(messages, f"sample {index}")
    render = _renderer(tokenizer, template_kwargs or {}, index)
    answer = final_answer and len(messages) > 1 and messages[-1]["role"] in CAUSAL_ROLES
    prompt_msgs = list(messages[:-1]) if answer else list(messages)
    pieces: list[Piece] = []
    previous = ""
    for i, msg in enumerate(prompt_msgs):
        rendered = render(prompt_msgs[: i + 1], False)
        if not rendered.startswith(previous):
            raise ValueError(
                f"sample {index}: the chat template renders message {i - 1} differently once message {i} follows; "
                "cannot cut the conversation into segments"
            )
        text = rendered[len(previous):]
        if i == 0 and msg["role"] != "system":
            preamble = _injected_preamble(render, msg, text)
            if preamble:
                pieces.append(Piece(preamble, segment=True))
                text = text[len(preamble):]
        pieces.append(Piece(text, segment=msg["role"] in SEGMENT_ROLES))
        previous = rendered
    if answer or add_generation_prompt:
        with_header = render(prompt_msgs, True)
        if not with_header.startswith(previous):
            raise ValueError(f"sample {index}: the generation prompt does not extend the rendered conversation")
        pieces.append(Piece(with_header[len(previous):]))
        previous = with_header
    if answer:
        full = render(list(messages), False)
        if not full.startswith(previous):
            raise ValueError(f"sample {index}: the final assistant message does not extend the generation prompt")
        pieces.append(Piece(full[len(previous):], label=True))
    return pieces


def conversation(system: str | None, user: str) -> list[dict]:
    """The chat of one request: a system message (none when ``system`` is empty or None), then the user message."""
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": user}]


def validate_messages(messages: Any, where: str = "sample 0") -> None:
    """Raise ``ValueError`` starting with ``where`` unless ``messages`` is a non-empty list of
    ``{"role", "content"}`` dicts with a known role and valid Unicode text (no lone surrogates) as content."""
    if not isinstance(messages, (list, tuple)):
        raise ValueError(f"{where}: messages must be a list of {{'role', 'content'}} dicts, "
                         f"got {type(messages).__name__}")
    if not messages:
        raise ValueError(f"{where}: empty conversation")
    for j, msg in enumerate(messages):
        if not isinstance(msg, dict) or "role" not in msg or "content" not in msg:
            raise ValueError(f"{where}, message {j}: expected a dict with 'role' and 'content', got {msg!r:.200}")
        check_choice("role", msg["role"], SEGMENT_ROLES + CAUSAL_ROLES, f"{where}, message {j}: ")
        content = msg["content"]
        if not isinstance(content, str):
            raise ValueError(f"{where}, message {j}: content must be a string")
        try:
            content.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ValueError(f"{where}, message {j}: content is not valid Unicode (lone surrogate "
                             f"{content[err.start]!r} at character {err.start})") from None


def _renderer(tokenizer: Any, template_kwargs: dict, index: int = 0):
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("tokenizer has no chat template; use encode_spans or the commonsense prompt form instead")
    from jinja2 import TemplateError

    def render(messages: list[dict], generation_prompt: bool) -> str:
        try:
            return tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=generation_prompt, **template_kwargs
            )
        except TemplateError as err:  # the template's own raise_exception(): it refuses this conversation
            raise ValueError(f"sample {index}: the chat template refuses this conversation: {err}") from None

    return render


def _injected_preamble(render, first: dict, text: str) -> str:
    """Text a template puts before a first non-system message (e.g. a default system prompt), if any.

    Found by rendering the same message after an explicit system message: what that adds is the message's own
    turn, so whatever precedes that turn in ``text`` was injected by the template. Only returned when it holds
    more than special-token markup (a bare BOS stays with the first segment).
    """
    try:
        system = [{"role": "system", "content": PROBE}]
        turn = render(system + [first], False)[len(render(system, False)):]
    except Exception:  # template without a system role: nothing is injected
        return ""
    if not turn or not text.endswith(turn) or len(text) == len(turn):
        return ""
    preamble = text[: len(text) - len(turn)]
    return preamble if _has_words(preamble) else ""


def _has_words(text: str) -> bool:
    stripped = re.sub(r"<[^<>\s]*>|\[[A-Z_/]+\]", "", text)  # <|im_start|>, <bos>, [INST] style markup
    return any(ch.isalnum() for ch in stripped)

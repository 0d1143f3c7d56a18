"""Multi-turn chat with MAS prefill over one growing KV cache.

Each turn appends the assistant's answer (causal) and the next user message (a new bidirectional segment) and
prefills only what the cache does not hold yet; the result equals prefilling the whole conversation from scratch,
because a segment never attends to what follows it.

    >>> chat = Conversation(model, tokenizer, system="You are terse.")
    >>> chat.send("Capital of France?", max_new_tokens=32)         # -> "Paris."
    >>> chat.send("And of Italy?", max_new_tokens=32)              # prefills only the new turn

The prompt of each turn is rendered from the whole message list with ``encode_chat``; the cached tokens are kept
up to the first token where that rendering differs from what is cached (e.g. an answer re-tokenized differently),
moved back to a segment start so no segment is split, and everything after it is prefilled again. Each turn runs
``segmask.generation.generate`` with the conversation's cache as ``past``: the decode loop, like every other
generation in segmask.
"""

from __future__ import annotations

from typing import Any

import torch

from ..core.chat import encode_chat
from ..core.runs import CAUSAL, segment_runs
from ..hf.backend import is_enabled, unwrap
from .batch import generate
from .prefix_cache import LivePrefix, PrefixCache


def reusable_length(cached: list[tuple[int, int]], prompt: list[tuple[int, int]]) -> int:
    """How many leading tokens of ``prompt`` can keep their cached KV.

    Args:
        cached: (token id, segment id) of each position held in the KV cache.
        prompt: (token id, segment id) of each position of the new prompt.

    Returns:
        n < len(prompt): the common prefix, moved back to the start of any segment that runs across position n in
        either sequence (a segment's KV depends on all of its tokens).
    """
    n = 0
    limit = min(len(cached), len(prompt) - 1)
    while n < limit and cached[n] == prompt[n]:
        n += 1
    for seq in (cached, prompt):
        for run in segment_runs([seg for _, seg in seq]):
            if run.start < n < run.end and run.segment != CAUSAL:
                n = run.start
    return n


class Conversation:
    """A chat whose KV cache persists across turns (one conversation, batch of 1).

    Args:
        model: a model after ``segmask.enable`` (MAS prefill), or without it for plain causal chat.
        tokenizer: its tokenizer with a chat template.
        system: optional system message.
        causal: ignore segments (plain causal prefill), for comparison.
        prefix_cache: optional ``PrefixCache``: the first turn starts from a cached system prompt when present.
        template_kwargs: extra ``apply_chat_template`` arguments.

    Attributes:
        messages: the conversation so far (``{"role", "content"}`` dicts).
        last_prefill: prompt tokens the last turn had to prefill (the rest came from the KV cache).
        last_tokens: the new token ids of the last answer.
        last_output: the last turn as transformers' generate returns it (``sequences`` [1, prompt + new tokens];
            ``logits``, per step [1, V], when ``output_logits=True``).
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, *, system: str | None = None, causal: bool = False,
                 prefix_cache: PrefixCache | None = None, template_kwargs: dict | None = None):
        if not causal and not is_enabled(model):
            raise ValueError("MAS is not enabled on this model: call segmask.enable(model) or pass causal=True")
        self.model, self.tokenizer, self.causal = model, tokenizer, causal
        self.prefix_cache, self.template_kwargs = prefix_cache, template_kwargs
        self.messages: list[dict] = [{"role": "system", "content": system}] if system else []
        self.cache: Any = None
        self.cached: list[tuple[int, int]] = []
        self.last_prefill = 0
        self.last_output: Any = None
        self.last_tokens: list[int] = []

    def prompt(self) -> dict[str, torch.Tensor]:
        """The current conversation plus generation header as a batch of 1 ([1, T] tensors)."""
        batch = encode_chat(self.tokenizer, self.messages, template_kwargs=self.template_kwargs)
        if self.causal:
            batch["segment_ids"] = torch.full_like(batch["input_ids"], CAUSAL)
        return batch

    def send(self, text: str, streamer: Any = None, **gen_kwargs: Any) -> str:
        """Add a user message, generate the answer (appended to ``messages``) and return its text.

        ``gen_kwargs`` go to ``segmask.generation.generate`` (``max_new_tokens``, ``do_sample``,
        ``stop_strings``, ...); ``streamer`` receives the new tokens as they come (e.g.
        ``transformers.TextStreamer``).
        """
        if not text:
            raise ValueError("empty user message")
        self.messages.append({"role": "user", "content": text})
        try:
            new_tokens = self._generate(self.prompt(), streamer, gen_kwargs)
        except Exception:
            self.messages.pop()
            raise
        self.last_tokens = new_tokens
        answer = self.tokenizer.decode(new_tokens, skip_special_tokens=True)
        self.messages.append({"role": "assistant", "content": answer})
        return answer

    def _generate(self, batch: dict[str, torch.Tensor], streamer: Any, gen_kwargs: dict) -> list[int]:
        from transformers import DynamicCache
        from transformers.generation.utils import GenerateDecoderOnlyOutput

        device = unwrap(self.model).device
        ids, segs = batch["input_ids"][0].tolist(), batch["segment_ids"][0].tolist()
        prompt = list(zip(ids, segs))
        self._start_from_prefix_cache(ids, segs)
        keep = reusable_length(self.cached, prompt)
        if self.cache is None:
            self.cache = DynamicCache(config=unwrap(self.model).config)
        if len(self.cached) > keep:
            self.cache.crop(keep - len(self.cached))
        self.last_prefill = len(prompt) - keep  # prompt tokens this turn prefills
        gen_kwargs.setdefault("pad_token_id", self.tokenizer.pad_token_id)
        inputs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask", "segment_ids")
                  if k != "segment_ids" or not self.causal}
        past = LivePrefix(tuple(ids[:keep]), tuple(segs[:keep]), self.cache)
        out = generate(self.model, inputs, tokenizer=self.tokenizer, past=past, streamer=streamer, **gen_kwargs)
        new = out.sequences[0].tolist()
        self.last_output = GenerateDecoderOnlyOutput(sequences=torch.cat([inputs["input_ids"], out.sequences], 1),
                                                     logits=out.logits)
        self.cached = (prompt + [(t, CAUSAL) for t in new])[: self.cache.get_seq_length()]
        self._store_prefix(ids, segs)
        return new

    def _store_prefix(self, ids: list[int], segs: list[int]) -> None:
        """Put this prompt's leading segments into the prefix cache (copied out of the conversation's cache)."""
        if self.prefix_cache is None or self.causal:
            return
        self.prefix_cache.store([(ids, segs)], self.cache, starts=[0])

    def _start_from_prefix_cache(self, ids: list[int], segs: list[int]) -> None:
        if self.cache is not None or self.prefix_cache is None or self.causal:
            return
        self.prefix_cache.check(self.model, self.tokenizer)
        entry = self.prefix_cache.lookup(ids, segs)
        if entry is not None:
            self.cache = entry.to_cache(1, unwrap(self.model).config)
            self.cached = list(zip(entry.token_ids, entry.segment_ids))

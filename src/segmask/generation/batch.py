"""``generate``: batched generation with MAS prefill and causal decoding, input checks and segment KV reuse.

This is the one place that decides how segmask generates. It runs segmask's decode loop
(``segmask.generation.decode``, the engine the server runs too) for greedy decoding and sampling (temperature,
top-k, top-p, seeds via ``torch.manual_seed``, several sequences per prompt, stop strings, raw logits, a streamer).
Only options the loop does not have (beam search, logits processors such as ``repetition_penalty``, other cache
implementations, ...; ``runs_on_loop``) go to transformers' generate, which ``segmask.enable`` taught the MAS
prefill; both routes take the same prefix cache, and both continue a caller's own KV cache (``past``, what
``Conversation`` does). Every other module of segmask generates through this function.

    >>> cache = PrefixCache(model, tokenizer)
    >>> batch = encode_chat(tokenizer, [[system, user_a], [system, user_b]])
    >>> out = generate(model, batch, prefix_cache=cache, tokenizer=tokenizer, max_new_tokens=64)
    >>> tokenizer.batch_decode(out.sequences, skip_special_tokens=True)

With a ``PrefixCache``, prompts that start with the same cached leading segments are laid out as
``[prefix | padding | new tokens]`` (padding in the middle is masked and skipped by the positions, so every sample
sees exactly the positions and keys of its cold prefill) and only the new tokens are prefilled; prompts that all
start with the same new prefix (one system prompt) have it prefilled once and stored; the leading segments of
other prompts are stored from the generation's own KV cache.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ..core.runs import CAUSAL
from ..core.segments import pad_token_id
from ..hf.backend import cache_kwarg, is_enabled, output_cache, unwrap
from ..hf.generate import expand_size, generate_blockers
from ..hf.plan import PrefillPlan, check_route, plan_prefill
from .decode import DecodeLoop, GenRequest
from .prefix_cache import LivePrefix, PrefixCache, PrefixEntry

LOOP_OPTIONS = frozenset({"max_new_tokens", "min_new_tokens", "do_sample", "temperature", "top_p", "top_k",
                          "num_return_sequences", "num_beams", "stop_strings", "output_logits", "eos_token_id",
                          "pad_token_id", "prefill_route", "return_dict_in_generate", "streamer"})
"""``generate`` options the decode loop runs; any other option set (or ``num_beams`` > 1, also in the model's
generation config) goes to transformers' ``generate``."""
_NEUTRAL = frozenset({("use_cache", True), ("output_attentions", False), ("output_hidden_states", False),
                      ("output_scores", False), ("return_dict_in_generate", False), ("_from_model_config", True)})
"""Generation-config settings the decode loop matches (beside token ids, ``max_length`` and the version)."""
_CONFIG_IDS = frozenset({"bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id", "max_length",
                         "transformers_version"})


@dataclass
class Generation:
    """Result of ``generate``.

    Attributes:
        sequences: [B * n, N] new tokens only (n = returned sequences per prompt; a row that ended with EOS keeps
            it), padded with the pad token.
        logits: per decoding step [B * n, V] raw float32 logits when ``output_logits=True`` was asked, else None.
        reused: per prompt, how many prompt tokens came from the prefix cache (0 = cold prefill).
    """

    sequences: torch.Tensor
    logits: tuple[torch.Tensor, ...] | None = None
    reused: list[int] = field(default_factory=list)


DEFAULT_NEW_TOKENS = 20  # transformers' generate: new tokens when neither the call nor the model sets a length

def check_prompts(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  max_new_tokens: int | None = None) -> None:
    """Raise ``ValueError`` naming the sample for an empty prompt or one too long for the model.

    Args:
        input_ids, attention_mask: [B, T] (1 = real token).
        max_new_tokens: counted into the length limit when given.
    """
    if input_ids.ndim != 2 or input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise ValueError(f"empty prompt: input_ids has shape {tuple(input_ids.shape)}")
    lengths = attention_mask.sum(-1).tolist()
    limit = getattr(unwrap(model).config, "max_position_embeddings", None)
    for b, n in enumerate(lengths):
        if n == 0:
            raise ValueError(f"sample {b}: empty prompt (no real tokens)")
        total = n + (max_new_tokens or 0)
        if limit is not None and total > limit:
            raise ValueError(f"sample {b}: prompt of {n} tokens + {max_new_tokens or 0} new tokens exceeds the "
                             f"model's {limit} positions")


def generate(model: torch.nn.Module, batch: Mapping[str, torch.Tensor], *, prefix_cache: PrefixCache | None = None,
             tokenizer: Any = None, past: LivePrefix | None = None, **gen_kwargs: Any) -> Generation:
    """Generate from a left-padded ``batch`` with MAS prefill (when it has ``segment_ids``) and causal decoding.

    Args:
        model: a model (or PeftModel) after ``segmask.enable``.
        batch: ``input_ids``, ``attention_mask``, optional ``segment_ids``, each [B, T], left padded.
        prefix_cache: reuse and store the KV of leading segments (needs ``segment_ids``).
        tokenizer: checked against the prefix cache; gives the pad and EOS ids; needed for ``stop_strings``.
        past: the caller's KV cache and the tokens it holds, which every prompt starts with (one prompt, one
            sequence): only the rest is prefilled and ``past.cache`` is extended in place (``prefix_cache`` unused).
        gen_kwargs: transformers' generate options, unset ones taken from the model's generation config:
            ``max_new_tokens``, ``min_new_tokens``, ``do_sample``, ``temperature``, ``top_k``, ``top_p``,
            ``num_return_sequences``, ``stop_strings``, ``output_logits``, ``eos_token_id`` (None: no EOS),
            ``pad_token_id``, ``streamer`` (one sequence; gets the prompt, then each new token, as transformers
            gives them) and ``prefill_route`` (``"auto"``, ``"dense"``, ``"segment"``:
            ``segmask.hf.prefill.mas_prefill``) run on the decode loop; any other (``num_beams``,
            ``repetition_penalty``, ``cache_implementation``, ...) runs transformers' ``generate``, where a warm
            request decodes into a DynamicCache built from the cache entry (``cache_implementation`` ignored).

    Returns:
        ``Generation`` with the new tokens [B * n, N].
    """
    input_ids = batch["input_ids"]
    attention_mask = batch.get("attention_mask")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    segment_ids = batch.get("segment_ids")
    check_prompts(model, input_ids, attention_mask, gen_kwargs.get("max_new_tokens"))
    if segment_ids is not None and not is_enabled(model):
        raise ValueError("batch has segment_ids but MAS is not enabled on this model: call segmask.enable(model)")
    on_loop = runs_on_loop(unwrap(model).generation_config, gen_kwargs)
    plan = _plan(model, input_ids, attention_mask, segment_ids, gen_kwargs, on_loop or past is not None)
    if prefix_cache is not None and segment_ids is not None and past is None:
        prefix_cache.check(model, tokenizer)
    else:
        prefix_cache = None
    rows = _unpad(input_ids, attention_mask, segment_ids)
    if past is not None and any(tuple(ids[:past.length]) != tuple(past.token_ids) for ids, _ in rows):
        raise ValueError(f"every prompt must start with the {past.length} tokens held in the KV cache (past)")
    if on_loop:
        return _loop_generate(model, rows, segment_ids is not None, prefix_cache, tokenizer, gen_kwargs, past)
    if tokenizer is not None:
        gen_kwargs.setdefault("tokenizer", tokenizer)
        if tokenizer.pad_token_id is not None:
            gen_kwargs.setdefault("pad_token_id", tokenizer.pad_token_id)
    if past is not None:  # transformers' generate skips the cached tokens of input_ids itself
        return _run(model, input_ids, attention_mask, segment_ids, gen_kwargs, reused=[past.length] * len(rows),
                    past_key_values=past.cache)[0]
    return _transformers_generate(model, input_ids, attention_mask, segment_ids, prefix_cache, gen_kwargs, plan)


def _plan(model, input_ids, attention_mask, segment_ids, gen_kwargs, own_prefill: bool) -> PrefillPlan | None:
    """The batch's ``PrefillPlan`` before anything runs (errors name the caller's sample); None without ids. Blocked by
    ``generate_blockers`` unless ``own_prefill`` (the decode loop or a caller's cache prefills)."""
    route = gen_kwargs.get("prefill_route", "auto")
    if segment_ids is None:
        check_route(route)
        return None
    if tuple(segment_ids.shape) != tuple(attention_mask.shape):  # a row's ids are read beside its tokens (_unpad)
        raise ValueError(f"segment_ids shape {tuple(segment_ids.shape)} does not match attention_mask shape "
                         f"{tuple(attention_mask.shape)}")
    blocked = [] if own_prefill else generate_blockers(model, input_ids, attention_mask, gen_kwargs)
    return plan_prefill(unwrap(model).config, segment_ids, batch_size=input_ids.shape[0],
                        query_length=input_ids.shape[1], attention_mask=attention_mask, route=route, blocked=blocked,
                        device=input_ids.device)


def runs_on_loop(generation_config: Any, gen_kwargs: Mapping[str, Any]) -> bool:
    """Whether ``generate`` runs these options (and the generation config's non-default settings) on the decode
    loop rather than transformers' ``generate``."""
    given = {k for k, v in gen_kwargs.items() if v is not None}
    configured = {k for k, v in generation_config.to_diff_dict().items()
                  if k not in _CONFIG_IDS and (k, v) not in _NEUTRAL}
    beams = gen_kwargs.get("num_beams") or generation_config.num_beams or 1
    return not (given - LOOP_OPTIONS) and not (configured - LOOP_OPTIONS) and beams == 1


def _loop_generate(model, rows, mas: bool, prefix_cache, tokenizer, kw, past) -> Generation:
    """``generate`` on the decode loop: one ``GenRequest`` per returned sequence."""
    config = unwrap(model).generation_config

    def get(name: str, default: Any = None) -> Any:
        for value in (kw.get(name), getattr(config, name, None)):
            if value is not None:
                return value
        return default

    eos_ids = None  # the model's and tokenizer's EOS ids, unless the call names its own (None: no EOS)
    if "eos_token_id" in kw:
        eos = kw["eos_token_id"]
        eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
    loop = DecodeLoop(model, tokenizer, mas=mas, prefix_cache=prefix_cache, isolate=False,
                      prefill_route=kw.get("prefill_route", "auto"), eos_ids=eos_ids)
    sampling = dict(temperature=get("temperature", 1.0), top_p=get("top_p", 1.0), top_k=get("top_k", 0)) \
        if get("do_sample", False) else {}
    n, width = int(get("num_return_sequences", 1)), max(len(ids) for ids, _ in rows)
    # as transformers' generate: max_new_tokens, else max_length (prompt included), else 20 new tokens
    max_length = get("max_length")
    max_new = get("max_new_tokens") or (max(1, max_length - width) if max_length else DEFAULT_NEW_TOKENS)
    stop = _stop_check(tokenizer, kw.get("stop_strings"))
    streamer = kw.get("streamer")
    on_event = _streaming(streamer, rows, n)
    requests = [GenRequest(ids, segs, max_new, on_event, should_stop=stop,
                           min_new_tokens=int(get("min_new_tokens", 0)), keep_logits=bool(kw.get("output_logits")),
                           **sampling) for ids, segs in rows for _ in range(n)]
    if past is None:
        loop.run(requests)
    else:
        loop.run_batch(requests, past)
    if streamer is not None:  # transformers' generate also hands the streamer the EOS that ended the row
        if requests[0].eos is not None:
            streamer.put(torch.tensor([requests[0].eos]))
        streamer.end()
    pad = kw.get("pad_token_id")
    pad = loop.pad_id if pad is None else pad
    done = [r.generated + ([] if r.eos is None else [r.eos]) for r in requests]
    longest = max(len(d) for d in done)
    device = next(model.parameters()).device
    sequences = torch.tensor([d + [pad] * (longest - len(d)) for d in done], dtype=torch.long, device=device)
    return Generation(sequences, _step_logits(requests) if kw.get("output_logits") else None,
                      [r.reused for r in requests[::n]])


def _streaming(streamer: Any, rows: list, n: int) -> Callable[[str, Any], None]:
    """The loop's event callback that feeds ``streamer`` (``put`` the prompt [1, T] now, then each new token [1])
    as transformers' generate does; a no-op without one."""
    if streamer is None:
        return lambda kind, value: None
    if len(rows) * n != 1:
        raise ValueError(f"a streamer takes one sequence; this call generates {len(rows) * n}")
    streamer.put(torch.tensor([rows[0][0]]))
    return lambda kind, value: streamer.put(torch.tensor([value])) if kind == "token" else None


def _step_logits(requests: list[GenRequest]) -> tuple[torch.Tensor, ...]:
    """Per step [B, V] logits of the requests; a row whose batch stopped earlier (another prefix group) is NaN."""
    blank = torch.full_like(requests[0].logits[0], float("nan"))
    steps = max(len(r.logits) for r in requests)
    return tuple(torch.stack([r.logits[s] if s < len(r.logits) else blank for r in requests]) for s in range(steps))


def _stop_check(tokenizer: Any, stops: Any) -> Callable[[list[int]], bool] | None:
    """``should_stop`` for ``stop_strings``: True once a stop string shows in the decoded new tokens."""
    if not stops:
        return None
    if tokenizer is None:
        raise ValueError("stop_strings needs the tokenizer: generate(..., tokenizer=tokenizer)")
    stops = [stops] if isinstance(stops, str) else list(stops)
    if not all(isinstance(s, str) and s for s in stops):
        raise ValueError(f"stop_strings must be non-empty strings, got {stops!r:.80}")
    window = max(len(s) for s in stops) + 2  # a string of L characters spans at most L tokens

    def seen(ids: list[int]) -> bool:
        # the window may start or end inside a character (its bytes decode to U+FFFD): match whole characters only
        text = tokenizer.decode(ids[-window - 4:]).strip("\ufffd")
        return any(s in text for s in stops)

    return seen


def _transformers_generate(model, input_ids, attention_mask, segment_ids, prefix_cache, gen_kwargs, plan) -> Generation:
    """transformers' ``generate`` with the MAS prefill (by ``plan`` when cold), for options the loop lacks."""
    if prefix_cache is None:
        return _run(model, input_ids, attention_mask, segment_ids, gen_kwargs, reused=[0] * len(input_ids),
                    plan=plan)[0]
    rows = _unpad(input_ids, attention_mask, segment_ids)
    entries = [prefix_cache.lookup(ids, segs) for ids, segs in rows]
    if entries[0] is None and len(rows) > 1:
        entries = [prefix_cache.prefill_shared(model, rows)] * len(rows)
    if entries[0] is not None and all(e is entries[0] for e in entries):
        return _generate_warm(model, rows, entries[0], gen_kwargs)
    out, past = _run(model, input_ids, attention_mask, segment_ids, gen_kwargs, reused=[0] * len(rows), plan=plan)
    pads = (attention_mask.shape[1] - attention_mask.sum(-1)).tolist()
    prefix_cache.store(rows, past, pads, expand_size(unwrap(model).generation_config, gen_kwargs))
    return out


def _run(model, input_ids, attention_mask, segment_ids, gen_kwargs, *, reused, past_key_values=None,
         plan=None) -> tuple[Generation, Any]:
    extra = {} if segment_ids is None else {"segment_ids": segment_ids}
    if past_key_values is not None:
        extra[cache_kwarg(model)] = past_key_values
    elif plan is not None:  # the prompt's own plan: generate neither checks nor routes it again
        extra["prefill_plan"] = plan
    gen_kwargs = {**gen_kwargs, "return_dict_in_generate": True}
    with torch.no_grad():  # the one call of transformers' generate: options the decode loop lacks (runs_on_loop)
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, **extra, **gen_kwargs)
    return (Generation(out.sequences[:, input_ids.shape[1]:], getattr(out, "logits", None), reused),
            output_cache(out))


def _unpad(input_ids, attention_mask, segment_ids) -> list[tuple[list[int], list[int]]]:
    """Per sample, the real tokens and their segment ids (causal without ``segment_ids``), padding dropped."""
    rows = []
    segments = torch.full_like(input_ids, CAUSAL) if segment_ids is None else segment_ids
    for ids, mask, segs in zip(input_ids.tolist(), attention_mask.tolist(), segments.tolist()):
        rows.append(([t for t, m in zip(ids, mask) if m], [s for s, m in zip(segs, mask) if m]))
    return rows


def _generate_warm(model, rows, entry: PrefixEntry, gen_kwargs) -> Generation:
    """Prefill only the tokens after ``entry``'s prefix: rows laid out as [prefix | padding | new tokens]."""
    lm = unwrap(model)
    pad = gen_kwargs.get("pad_token_id")
    batch = entry.layout(rows, pad if pad is not None else pad_token_id(None, lm.generation_config))
    cache = entry.to_cache(len(rows) * expand_size(lm.generation_config, gen_kwargs), lm.config)
    gen_kwargs = {k: v for k, v in gen_kwargs.items() if k != "cache_implementation"}
    return _run(model, batch["input_ids"], batch["attention_mask"], batch["segment_ids"], gen_kwargs,
                reused=[entry.length] * len(rows), past_key_values=cache)[0]

"""lm-evaluation-harness model type ``segmask``: contexts prefilled with MAS, continuations scored causally.

lm-eval has no plugin discovery for model types, so the ``segmask`` type is registered when this module is
imported (never by ``import segmask``). Either run the harness through this module, which registers and then hands
its arguments to lm-eval's own command line:

    python -m segmask.eval.lmeval run --model segmask \
        --model_args pretrained=smollm2-135m-instruct,mask=mas --tasks boolq

or import it before calling lm-eval from Python: ``import segmask.eval.lmeval; lm_eval.simple_evaluate(model="segmask",
...)``. Install with ``pip install 'segmask[lmeval]'``.

Model arguments (``--model_args``):
    pretrained   embedded name, HF id or local folder (default: the embedded SmolLM2-135M-Instruct)
    adapter      LoRA adapter folder; its ``segmask.json`` sets the default ``mask``
    mask         ``mas`` (default) or ``causal``
    segments     how a plain (non chat-template) context is cut: ``context`` = the whole context is one segment
                 (default), ``split`` = one segment per ``delimiter``-separated part (few-shot examples),
                 ``question`` = the context's last line (the answer lead-in, ``Answer:`` in lm-eval's ARC, PIQA,
                 BoolQ prompts) causal and everything before it one segment, as ``segmask eval --protocol choice``
                 prefills its ``qa`` prompt
    delimiter    separator for ``segments=split`` (default: two newlines, lm-eval's few-shot delimiter)
    dtype, attn_implementation, device, batch_size, max_length, max_gen_toks

With ``--apply_chat_template`` each system/user message of the rendered chat is its own segment, exactly as
``segmask.encode_chat`` cuts it. ``loglikelihood_rolling`` (perplexity) is always causal: every token of the text
is scored, so no token may see a later one.

Log-likelihood requests that share a context (the options of one multiple-choice question) are scored from one
prefill of that context: its KV cache is repeated for every continuation (``segmask.eval.scoring``).
"""

from __future__ import annotations

from typing import Any

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from ..core.masks import CAUSAL
from ..core.recipe import BASE_MODEL, MASKS, check_choice, resolve_adapter
from ..core.segments import Example, Piece, collate, encode_pieces, pad_token_id
from ..generation.batch import generate
from .scoring import continuation_scores

SEGMENTS = ("context", "split", "question")


@register_model("segmask")
class SegmaskLM(LM):
    """A segmask-enabled Hugging Face causal LM behind lm-eval's ``LM`` interface (see the module docstring)."""

    def __init__(self, pretrained: Any = BASE_MODEL, *, tokenizer: Any = None, adapter: str | None = None,
                 mask: str | None = None, segments: str = "context", delimiter: str = "\n\n", dtype: str = "float32",
                 attn_implementation: str = "sdpa", device: str | None = None, batch_size: int | str | None = 8,
                 max_batch_size: int | None = None, max_length: int | None = None, max_gen_toks: int = 256,
                 **unused: Any):
        super().__init__()
        if unused:
            raise ValueError(f"unknown segmask model_args {sorted(unused)}; see `pydoc segmask.eval.lmeval`")
        from ..hf.hook import enable
        from ..hf.models import load_model

        recipe = resolve_adapter(adapter, mask)  # the adapter's segmask.json, read once for the mask and the load
        check_choice("mask", recipe.mask, MASKS)
        check_choice("segments", segments, SEGMENTS)
        if isinstance(pretrained, str):
            self.model, self.tokenizer = load_model(pretrained, dtype=dtype, attn_implementation=attn_implementation,
                                                    device=_device(device), adapter=adapter, recipe=recipe)
        else:  # an already loaded model (tests, notebooks); its tokenizer must come along
            if tokenizer is None:
                raise ValueError("pass tokenizer=... together with a model object as pretrained")
            self.model, self.tokenizer = pretrained.eval(), tokenizer
        self.mas, self.segments, self.delimiter = recipe.mas, segments, delimiter
        if self.mas:
            enable(self.model)
        self.batch_size = 8 if batch_size in (None, "auto") else int(str(batch_size).split(":")[0])
        limit = getattr(self.model.config, "max_position_embeddings", None) or 2048
        self.max_length = int(max_length) if max_length else limit
        self.max_gen_toks = int(max_gen_toks)
        self._device = next(self.model.parameters()).device
        self._chat_pieces: dict[str, list[Piece]] = {}
        self.pad_id = pad_token_id(self.tokenizer)

    # ---- chat templates -------------------------------------------------------------------------------------------
    @property
    def tokenizer_name(self) -> str:
        return getattr(self.tokenizer, "name_or_path", "segmask").replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return getattr(self.tokenizer, "chat_template", None) or ""

    def apply_chat_template(self, chat_history: list[dict], add_generation_prompt: bool = True) -> str:
        """Render ``chat_history`` and remember its segments, so the context string maps back to them."""
        from ..core.chat import chat_pieces

        kwargs = {} if add_generation_prompt else {"continue_final_message": True}
        text = self.tokenizer.apply_chat_template(chat_history, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt, **kwargs)
        if add_generation_prompt:
            pieces = chat_pieces(self.tokenizer, chat_history, True)
        else:  # the last (assistant) message is an open prefix of the answer: causal text after the header
            pieces = chat_pieces(self.tokenizer, chat_history[:-1], True)
        head = "".join(p.text for p in pieces)
        if text.startswith(head):
            self._chat_pieces[text] = pieces + ([Piece(text[len(head):])] if len(text) > len(head) else [])
        return text

    # ---- encoding -------------------------------------------------------------------------------------------------
    def context_pieces(self, context: str) -> list[Piece]:
        """How ``context`` is segmented: the chat template's messages, the whole context, or delimiter parts."""
        if not self.mas:
            return [Piece(context)]
        if context in self._chat_pieces:
            return self._chat_pieces[context]
        if self.segments == "context":
            return [Piece(context, segment=True)]
        if self.segments == "question":
            head, newline, lead = context.rpartition("\n")
            return [Piece(head + newline, segment=True), Piece(lead)] if newline else [Piece(context, segment=True)]
        parts = context.split(self.delimiter)
        return [Piece(part + (self.delimiter if i < len(parts) - 1 else ""), segment=True)
                for i, part in enumerate(parts)]

    def encode_pair(self, context: str, continuation: str) -> tuple[Example, list[int]]:
        """(context ``Example`` with segment ids, continuation token ids), split as lm-eval's HF model does.

        Trailing whitespace of the context moves to the continuation; the continuation's ids are those of
        ``context + continuation`` after the context's own tokens.
        """
        if context == "":
            cont = self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
            prefix = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.pad_id
            return Example([prefix], [CAUSAL], [-100]), cont
        n_spaces = len(context) - len(context.rstrip())
        pieces = self.context_pieces(context)
        if n_spaces:
            continuation, context = context[-n_spaces:] + continuation, context[:-n_spaces]
            pieces = _trim_pieces(pieces, n_spaces)
        ctx = encode_pieces(self.tokenizer, pieces)
        whole = self.tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
        return ctx, whole[len(ctx.input_ids):]

    # ---- requests -------------------------------------------------------------------------------------------------
    def loglikelihood(self, requests: list, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """Sum of log-probabilities of each continuation given its MAS-prefilled context, and whether greedy."""
        rows = []
        for req in requests:
            ctx, cont = self.encode_pair(*req.args)
            if not cont:
                raise ValueError(f"continuation {req.args[1]!r} has no tokens")
            rows.append((ctx, cont))
        results = self._score(rows)
        for req, res in zip(requests, results):
            self.cache_hook.add_partial("loglikelihood", req.args, res)
        return results

    def loglikelihood_rolling(self, requests: list, disable_tqdm: bool = False) -> list[float]:
        """Causal log-likelihood of whole texts in rolling windows of ``max_length`` (no segments: see above)."""
        out = []
        prefix = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.pad_id
        for req in requests:
            tokens = self.tokenizer(req.args[0], add_special_tokens=False)["input_ids"]
            windows = [make_disjoint_window(w) for w in get_rolling_token_windows(tokens, prefix, self.max_length, 1)]
            rows = [(Example(ctx, [CAUSAL] * len(ctx), [-100] * len(ctx)), pred) for ctx, pred in windows]
            out.append(sum(lp for lp, _ in self._score(rows)))
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, out[-1])
        return out

    def _score(self, rows: list[tuple[Example, list[int]]]) -> list[tuple[float, bool]]:
        """(log-probability, is_greedy) of each continuation after its context, with ``segmask.eval.scoring``'s one
        scorer: one prefill per distinct context, its continuations from the KV cache. A context that does not fit
        ``max_length`` together with its continuation keeps its last tokens (as lm-eval truncates)."""
        groups: dict[tuple, tuple[Example, list[int]]] = {}
        for i, (ctx, cont) in enumerate(rows):
            if len(cont) >= self.max_length:
                raise ValueError(f"continuation of {len(cont)} tokens does not fit max_length {self.max_length}")
            ctx = _tail(ctx, min(len(ctx), self.max_length - len(cont)))
            groups.setdefault((tuple(ctx.input_ids), tuple(ctx.segment_ids)), (ctx, []))[1].append(i)
        members = list(groups.values())  # causal contexts (mask=causal, rolling windows) have segment ids -1 only
        scores = continuation_scores(self.model, self.tokenizer, [ctx for ctx, _ in members],
                                     [[rows[i][1] for i in m] for _, m in members], batch_size=self.batch_size)
        results: list[tuple[float, bool] | None] = [None] * len(rows)
        for (_, m), got in zip(members, scores):
            for i, res in zip(m, got):
                results[i] = res
        return results  # type: ignore[return-value]

    @torch.no_grad()
    def generate_until(self, requests: list, disable_tqdm: bool = False) -> list[str]:
        """Greedy (or sampled, per ``gen_kwargs``) continuations of MAS-prefilled contexts, cut at ``until``."""
        out = []
        for req in requests:
            context, gen_kwargs = req.args
            kwargs = dict(gen_kwargs or {})
            until = kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(kwargs.pop("max_gen_toks", self.max_gen_toks))
            do_sample = bool(kwargs.pop("do_sample", False)) and float(kwargs.get("temperature", 0.0)) > 0
            if not do_sample:
                kwargs.pop("temperature", None)
                kwargs.pop("top_p", None)
            ctx = encode_pieces(self.tokenizer, self.context_pieces(context))
            keep = max(1, self.max_length - max_new)
            batch = collate([_tail(ctx, keep)], pad_token_id=self.pad_id, with_labels=False).to(self._device)
            inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "segment_ids")
                      if k != "segment_ids" or self.mas}
            stops = {"stop_strings": until} if until else {}
            ids = generate(self.model, inputs, tokenizer=self.tokenizer, max_new_tokens=max_new, do_sample=do_sample,
                           pad_token_id=self.pad_id, **stops, **kwargs).sequences
            text = self.tokenizer.decode(ids[0], skip_special_tokens=True)
            for stop in until:
                text = text.split(stop)[0]
            out.append(text)
            self.cache_hook.add_partial("generate_until", req.args, text)
        return out


def _device(device: str | None) -> str:
    """lm-eval's CLI asks for ``cuda:0`` by default; without CUDA that means the CPU (as its own HF model does)."""
    if device is None or (str(device).startswith("cuda") and not torch.cuda.is_available()):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def _tail(example: Example, keep: int) -> Example:
    """The last ``keep`` tokens of ``example`` (lm-eval truncates long contexts from the left)."""
    return Example(example.input_ids[-keep:], example.segment_ids[-keep:], [-100] * min(keep, len(example)))


def _trim_pieces(pieces: list[Piece], n_chars: int) -> list[Piece]:
    """Drop the last ``n_chars`` characters of the concatenated pieces."""
    out = list(pieces)
    while n_chars and out:
        last = out.pop()
        if len(last.text) > n_chars:
            out.append(Piece(last.text[:-n_chars], segment=last.segment, label=last.label))
            n_chars = 0
        else:
            n_chars -= len(last.text)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m segmask.eval.lmeval ...``: lm-eval's own command line with the ``segmask`` model type registered."""
    import sys

    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["lm_eval", *(sys.argv[1:] if argv is None else argv)]
    cli_evaluate()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The three scoring protocols, one function each: a task's records -> one prediction row per record.

* ``generate`` (the paper's): decode an answer, take the first label written in it.
* ``loglik``: score each offered label (``" answer3"``) after ``"the correct answer is"``.
* ``choice``: score each option's text (``" the producers in all ecosystems are plants"``) after the prompt's
  answer lead-in; winogrande by partial scoring (see ``choice.py``).

Every row holds ``task``, ``index``, ``answer`` (the gold label), ``prediction`` (the label picked, None when a
generation names none) and ``correct``; the log-likelihood protocols add ``prediction_norm``/``correct_norm``
(``acc_norm``), ``choices`` (labels) and ``logprobs``; choice adds ``options`` (texts) and ``picked`` (the text of
the option picked), so a reader can check what the model actually chose.

    >>> rows = run_choice(model, tokenizer, TASKS["ARC-Easy"], records, mask="mas", prompt_form="commonsense",
    ...                   system=None, layout="data", batch_size=8)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .choice import choice_request
from .prompts import loglik_request, prompt_example
from .scoring import generate_texts, loglik_scores, pick
from .tasks import Task

PROTOCOLS = ("generate", "loglik", "choice")


def run_generate(model: Any, tokenizer: Any, task: Task, records: list[dict], *, mask: str, prompt_form: str,
                 system: str | None, layout: str, batch_size: int, on_batch: Callable[[int], None] | None = None,
                 num_beams: int = 4, max_new_tokens: int = 32) -> list[dict]:
    """Generate (beam search; ``num_beams=1`` greedy) and extract the first task label of each output."""
    prompts = [prompt_example(tokenizer, r, mask=mask, prompt_form=prompt_form, system=system,
                              layout=layout) for r in records]
    texts = generate_texts(model, tokenizer, prompts, num_beams=num_beams, max_new_tokens=max_new_tokens,
                           batch_size=batch_size, on_batch=on_batch)
    rows = []
    for record, text in zip(records, texts):
        prediction = task.extract(text)
        rows.append({"task": task.name, "index": record["index"], "answer": record["answer"],
                     "prediction": prediction, "correct": int(prediction == record["answer"]), "output": text})
    return rows


def run_loglik(model: Any, tokenizer: Any, task: Task, records: list[dict], *, mask: str, prompt_form: str,
               system: str | None, layout: str, batch_size: int,
               on_batch: Callable[[int], None] | None = None) -> list[dict]:
    """Score the record's offered labels as continuations of the prompt + ``"the correct answer is"``."""
    choices = [task.choices(r) for r in records]
    requests = [loglik_request(tokenizer, r, c, mask=mask, prompt_form=prompt_form, system=system,
                               layout=layout) for r, c in zip(records, choices)]
    scores = loglik_scores(model, tokenizer, [ctx for ctx, _ in requests], [conts for _, conts in requests],
                           batch_size=batch_size, on_batch=on_batch)
    rows = []
    for record, offered, logps in zip(records, choices, scores):
        best = offered[pick(logps)]
        best_norm = offered[pick(logps, [len(" " + c) for c in offered])]
        rows.append({"task": task.name, "index": record["index"], "answer": record["answer"], "prediction": best,
                     "correct": int(best == record["answer"]), "prediction_norm": best_norm,
                     "correct_norm": int(best_norm == record["answer"]), "choices": list(offered),
                     "logprobs": [round(x, 5) for x in logps]})
    return rows


def run_choice(model: Any, tokenizer: Any, task: Task, records: list[dict], *, mask: str, prompt_form: str,
               system: str | None, layout: str, batch_size: int,
               on_batch: Callable[[int], None] | None = None) -> list[dict]:
    """Score each option's text after the prompt's answer lead-in (one prefill per record, options from its cache)."""
    requests = [choice_request(tokenizer, r, mask=mask, prompt_form=prompt_form, system=system,
                               layout=layout) for r in records]
    for record, request in zip(records, requests):
        if request.question.labels != task.choices(record) or record["answer"] not in request.question.labels:
            raise ValueError(f"task {task.name!r} record {record['index']}: parsed labels "
                             f"{request.question.labels} disagree with the answer format or the answer "
                             f"{record['answer']!r}")
    scores = loglik_scores(model, tokenizer, [r.context for r in requests], [r.continuations for r in requests],
                           skip=[r.skip for r in requests], batch_size=batch_size, on_batch=on_batch)
    rows = []
    for record, request, logps in zip(records, requests, scores):
        labels, options = request.question.labels, request.question.options
        best, best_norm = pick(logps), pick(logps, request.norm_lengths())
        rows.append({"task": task.name, "index": record["index"], "answer": record["answer"],
                     "prediction": labels[best], "correct": int(labels[best] == record["answer"]),
                     "prediction_norm": labels[best_norm], "correct_norm": int(labels[best_norm] == record["answer"]),
                     "picked": options[best], "choices": list(labels), "options": list(options),
                     "logprobs": [round(x, 5) for x in logps]})
    return rows


RUNNERS = {"generate": run_generate, "loglik": run_loglik, "choice": run_choice}
"""Protocol name -> its runner."""

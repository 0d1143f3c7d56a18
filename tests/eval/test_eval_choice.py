"""The choice protocol on a tiny random Llama with the real SmolLM2 tokenizer: contexts and continuations pinned as
text, option scores against a hand-computed reference (the whole text tokenized in one go, scored tokens found by
character offsets, one stock eager forward per option with the dense mask), the causal-repeat baseline, option
order, and ``evaluate`` end to end with its pick histograms. CPU only, no network (skipped without the tokenizer)."""

from __future__ import annotations

import json

import pytest
import torch

import segmask
from segmask.core.masks import segment_mask
from segmask.core.segments import Piece
from segmask.core.templates import COMMONSENSE_SYSTEM
from segmask.eval import evaluate, format_picks
from segmask.eval.choice import choice_request
from segmask.eval.prompts import mask_pieces
from segmask.eval.scoring import loglik_scores

ARC = {"instruction": "Please choose the correct answer to the question: Where do fish live?\n\nAnswer1: in trees "
                      "Answer2: in water Answer3: in the sky\n\nAnswer format: answer1/answer2/answer3",
       "input": "", "answer": "answer2", "index": 0}
BOOLQ = {"instruction": "Please answer the following question with true or false, question: is ice cold?\n\n"
                        "Answer format: true/false", "input": "", "answer": "true", "index": 1}
WINO = {"instruction": "Please choose the correct answer to fill in the blank to complete the given sentence: Sarah "
                       "was a better surgeon than Maria so _ got the easier cases.\n\nOption1: Sarah Option2: Maria "
                       "Answer format: option1/option2", "input": "", "answer": "option2", "index": 2}
PIQA = {"instruction": "Please choose the correct solution to the question: How do I dry a wet cup quickly?\n\n"
                       "Solution1: Wipe it with a towel.\n\nSolution2: Put it in the freezer.\n\n"
                       "Answer format: solution1/solution2", "input": "", "answer": "solution1", "index": 3}
RECORDS = [ARC, BOOLQ, WINO, PIQA]
RESPONSE = "\n\n### Response:\n"


def decoded(tok, request) -> list[tuple[str, str]]:
    return [(tok.decode(ids[:k]), tok.decode(ids[k:])) for ids, k in zip(request.continuations, request.skip)]


def test_commonsense_context_and_option_texts(tok):
    request = choice_request(tok, ARC, mask="mas")
    assert request.context.text == (COMMONSENSE_SYSTEM + "### Instruction:\n" + ARC["instruction"] + RESPONSE
                                    + "the correct answer is")
    assert decoded(tok, request) == [("", " in trees"), ("", " in water"), ("", " in the sky")]
    assert request.scored == [" in trees", " in water", " in the sky"] and request.norm_lengths() == [9, 9, 11]
    assert sorted(set(request.context.segment_ids)) == [-1, 0, 1]
    assert set(choice_request(tok, ARC, mask="causal").context.segment_ids) == {-1}


def test_winogrande_partial_scoring(tok):
    request = choice_request(tok, WINO)
    assert request.context.text.endswith(RESPONSE + "Sarah was a better surgeon than Maria so")
    assert decoded(tok, request) == [(" Sarah", " got the easier cases."), (" Maria", " got the easier cases.")]
    qa = choice_request(tok, WINO, prompt_form="qa")
    assert qa.context.text == "Sarah was a better surgeon than Maria so"
    assert set(qa.context.segment_ids) == {0}  # the sentence up to the blank is the segment
    assert decoded(tok, qa) == decoded(tok, request)


def test_qa_prompt_is_lm_evals(tok):
    request = choice_request(tok, ARC, prompt_form="qa")
    assert request.context.text == "Question: Where do fish live?\nAnswer:"
    segs = request.context.segment_ids
    lead = len(tok("Answer:", add_special_tokens=False)["input_ids"])
    assert segs[-lead:] == [-1] * lead and set(segs[:-lead]) == {0}
    with pytest.raises(ValueError, match="lists no options"):
        choice_request(tok, ARC, prompt_form="qa", layout="before")


def test_layout_before(tok):
    request = choice_request(tok, ARC, layout="before")
    assert "### Instruction:\nAnswer1: in trees Answer2: in water Answer3: in the sky\n\nPlease choose the correct " \
           "answer to the question: Where do fish live?\n\nAnswer format:" in request.context.text
    assert decoded(tok, request) == decoded(tok, choice_request(tok, ARC))


def test_causal_repeat_reads_the_question_part_twice(tok):
    pieces = [Piece("sys ", segment=True), Piece("question ", segment=True), Piece("Answer:")]
    assert mask_pieces(pieces, "causal-repeat") == [Piece("sys "), Piece("question "), Piece("sys "),
                                                    Piece("question "), Piece("Answer:")]
    assert mask_pieces(pieces, "causal") == [Piece("sys "), Piece("question "), Piece("Answer:")]
    assert mask_pieces(pieces, "mas") == pieces
    request = choice_request(tok, ARC, mask="causal-repeat")
    prompt = COMMONSENSE_SYSTEM + "### Instruction:\n" + ARC["instruction"] + "\n\n"
    assert request.context.text == prompt + prompt + "### Response:\nthe correct answer is"
    assert set(request.context.segment_ids) == {-1}
    assert choice_request(tok, ARC, prompt_form="qa", mask="causal-repeat").context.text == \
        "Question: Where do fish live?\nQuestion: Where do fish live?\nAnswer:"


def reference_scores(tok, reference, request) -> list[float]:
    """Each option's text appended to the context text, tokenized whole; tokens ending past the unscored text are
    scored, under the dense mask of the context's segments (option tokens causal)."""
    scores = []
    for (unscored, scored) in decoded(tok, request):
        text = request.context.text + unscored + scored
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = enc["input_ids"]
        n = len(request.context)
        assert ids[:n] == request.context.input_ids
        segs = request.context.segment_ids + [-1] * (len(ids) - n)
        allowed = segment_mask(torch.tensor([segs]))
        additive = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)
        with torch.no_grad():
            logp = torch.log_softmax(reference(input_ids=torch.tensor([ids]), attention_mask=additive).logits[0], -1)
        start = len(request.context.text + unscored)
        scored = [t for t in range(n, len(ids)) if enc["offset_mapping"][t][1] > start]
        scores.append(sum(float(logp[t - 1, ids[t]]) for t in scored))
    return scores


@pytest.mark.parametrize("mask, form", [("mas", "commonsense"), ("causal", "commonsense"),
                                        ("causal-repeat", "commonsense"), ("mas", "qa")])
def test_scores_match_hand_computed_reference(tok, models, mask, form):
    model, reference = models
    requests = [choice_request(tok, r, mask=mask, prompt_form=form) for r in RECORDS]
    segmask.enable(model)
    try:
        got = loglik_scores(model, tok, [r.context for r in requests], [r.continuations for r in requests],
                            skip=[r.skip for r in requests], batch_size=4)  # one left-padded batch, 2-3 options each
    finally:
        segmask.disable(model)
    for request, scores in zip(requests, got):
        torch.testing.assert_close(torch.tensor(scores), torch.tensor(reference_scores(tok, reference, request)),
                                   atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("record", [ARC, WINO, BOOLQ])
@pytest.mark.parametrize("order", ["after", "before"])
def test_text_answer_training_targets_are_the_scored_continuations(tok, record, order):
    """``segmask train --answer-form text`` trains exactly the tokens choice scores for the correct option."""
    from segmask.train.data import encode_record

    example = encode_record(tok, {**record, "output": "unused"}, answer_form="text", layout=order)
    request = choice_request(tok, record, layout=order)
    n, gold = len(request.context), request.question.index(record["answer"])
    cont = request.continuations[gold]
    assert example.input_ids[:n] == request.context.input_ids
    assert example.input_ids[n:n + len(cont)] == cont
    assert example.input_ids[n + len(cont):] == [tok.eos_token_id]


def test_skip_is_validated(tok, models):
    request = choice_request(tok, ARC)
    with pytest.raises(ValueError, match="must leave every continuation a scored token"):
        loglik_scores(models[0], tok, [request.context], [request.continuations],
                      skip=[[len(c) for c in request.continuations]])


def test_evaluate_choice_end_to_end(tok, models, tmp_path):
    model, _ = models
    for name, records in {"ARC-Easy": [ARC, ARC], "winogrande": [WINO], "boolq": [BOOLQ]}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "test.json").write_text(json.dumps([{**r, "output": "x"} for r in records]))
    summary = evaluate(model, tok, "all", tmp_path, protocol="choice", mask="mas", progress=False,
                       out_dir=tmp_path / "run")
    assert not segmask.is_enabled(model)
    rows = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert [r["task"] for r in rows] == ["boolq", "winogrande", "ARC-Easy", "ARC-Easy"]
    for row in rows:
        best = max(range(len(row["logprobs"])), key=lambda i: row["logprobs"][i])
        assert row["prediction"] == row["choices"][best] and row["picked"] == row["options"][best]
        assert row["correct"] == int(row["prediction"] == row["answer"])
    arc = summary["tasks"]["ARC-Easy"]
    assert arc["answers"] == {"answer2": 2} and sum(arc["picks"].values()) == 2 == sum(arc["picks_norm"].values())
    assert summary["tasks"]["winogrande"]["acc"] == summary["tasks"]["winogrande"]["acc_norm"]  # same scored text
    assert "(2)" in format_picks(summary).splitlines()[3]
    assert summary["settings"]["layout"] == "data"
    with pytest.raises(ValueError, match="use it with protocol 'choice'"):
        evaluate(model, tok, "boolq", tmp_path, protocol="loglik", prompt_form="qa", progress=False)
    before = evaluate(model, tok, "ARC-Easy", tmp_path, protocol="loglik", layout="before",
                      mask="causal-repeat", progress=False)
    assert before["settings"]["layout"] == "oq" and before["tasks"]["ARC-Easy"]["n"] == 2


def test_evaluate_resumes_the_tasks_an_earlier_call_finished(tok, models, tmp_path, monkeypatch):
    """A run cut short after some tasks continues with the rest: the finished tasks' rows are kept, not recomputed,
    and the result equals one uninterrupted run; a resume with other settings is refused, naming the setting."""
    import shutil

    from segmask.eval import protocols

    model, _ = models
    for name, records in {"ARC-Easy": [ARC, ARC], "winogrande": [WINO], "boolq": [BOOLQ]}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "test.json").write_text(json.dumps([{**r, "output": "x"} for r in records]))
    whole = evaluate(model, tok, "all", tmp_path, protocol="choice", mask="mas", progress=False, out_dir=tmp_path / "a")
    assert sorted(p.name for p in (tmp_path / "a" / "parts").iterdir()) == ["ARC-Easy", "boolq", "winogrande"]
    shutil.copytree(tmp_path / "a" / "parts", tmp_path / "b" / "parts")
    shutil.rmtree(tmp_path / "b" / "parts" / "winogrande")  # cut short before winogrande finished
    ran = []
    runner = protocols.RUNNERS["choice"]
    monkeypatch.setitem(protocols.RUNNERS, "choice", lambda m, t, task, *a, **k: ran.append(task.name) or
                        runner(m, t, task, *a, **k))
    resumed = evaluate(model, tok, "all", tmp_path, protocol="choice", mask="mas", progress=False,
                       out_dir=tmp_path / "b", resume=True)
    assert ran == ["winogrande"]
    assert resumed["predictions"] == whole["predictions"] and resumed["tasks"] == whole["tasks"]
    with pytest.raises(ValueError, match="layout 'data' there, 'oq' now"):
        evaluate(model, tok, "all", tmp_path, protocol="choice", mask="mas", layout="before", progress=False,
                 out_dir=tmp_path / "b", resume=True)
    with pytest.raises(ValueError, match="adapter None there, 'other' now"):  # another model's parts are not kept
        evaluate(model, tok, "all", tmp_path, protocol="choice", mask="mas", progress=False,
                 out_dir=tmp_path / "b", resume=True, meta={"adapter": "other"})

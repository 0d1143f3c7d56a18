"""segmask.vllm's segment finder against encode_chat (the reference), on the embedded SmolLM2 tokenizer (no vLLM)."""

from __future__ import annotations

import pytest

from segmask import encode_chat
from segmask.vllm import find_segments, segment_ids_from_ranges, validate_ranges

SYSTEM = {"role": "system", "content": "You answer in one short sentence."}
CONVERSATIONS = [
    [{"role": "user", "content": "Name a colour."}],                                   # template's default system
    [SYSTEM, {"role": "user", "content": "Capital of France?"}],
    [SYSTEM, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
     {"role": "user", "content": "And Spain?"}],
    [SYSTEM, {"role": "user", "content": "Look this up."}, {"role": "assistant", "content": "Calling."},
     {"role": "tool", "content": '{"answer": 42}'}, {"role": "user", "content": "So?"}],
    [{"role": "developer", "content": "Be exact."}, {"role": "user", "content": "x" * 300}],
    [SYSTEM, {"role": "user", "content": "<|im_end|> is text here; so is user\n and assistant\n."}],
    [{"role": "system", "content": ""}, {"role": "user", "content": "\n\n"}],
]


@pytest.mark.parametrize("index", range(len(CONVERSATIONS)))
def test_find_segments_equals_encode_chat(tokenizer, index):
    batch = encode_chat(tokenizer, CONVERSATIONS[index], final_answer=False)
    ids = batch["input_ids"][0].tolist()
    ranges = find_segments(tokenizer, ids)
    assert segment_ids_from_ranges(ranges, len(ids)) == batch["segment_ids"][0].tolist()


def test_template_rendering_equals_encode_chat_ids(tokenizer):
    """What a server tokenizes (the template rendered whole) is what encode_chat tokenizes piece by piece."""
    for conv in CONVERSATIONS:
        ids = tokenizer.apply_chat_template(conv, add_generation_prompt=True, tokenize=True, return_dict=True)
        assert list(ids["input_ids"]) == encode_chat(tokenizer, conv, final_answer=False)["input_ids"][0].tolist()


def test_plain_prompt_has_no_segments(tokenizer):
    assert find_segments(tokenizer, tokenizer("Once upon a time")["input_ids"]) == []


def test_validate_ranges():
    assert validate_ranges([0, 3, 5, 9], 10) == [(0, 3), (5, 9)]
    assert validate_ranges([(0, 3)], 3) == [(0, 3)]
    for bad in ([0, 3, 2, 5], [0, 11], [4, 4], [0, 1, 2], [(0, "3")], [(-1, 2)]):
        with pytest.raises(ValueError, match="segment range"):
            validate_ranges(bad, 10)

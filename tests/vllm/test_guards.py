"""The plugin's refusals inside vLLM's own objects, without an engine: the version check at registration, the
prefix-cache hook that fails when it cannot find what it wraps, the worker check on real runner classes with their
attention groups, and the batch guard of the attention hook. ``make test-vllm``."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.vllm
vllm = pytest.importorskip("vllm")

from segmask.vllm import plugin  # noqa: E402
from segmask.vllm.route import VERIFIED_BACKEND_CLS, worker_problems  # noqa: E402

STOCK_CPU = "vllm.v1.attention.backends.cpu_attn.CPUAttentionBackend"


@pytest.fixture(scope="module", autouse=True)
def registered():
    plugin.register()


def test_register_refuses_another_vllm_version(monkeypatch):
    from vllm.v1.attention.backends.registry import AttentionBackendEnum

    before = AttentionBackendEnum.CPU_ATTN.get_path()
    monkeypatch.setattr(vllm, "__version__", "0.33.0")
    with pytest.raises(RuntimeError, match=r"verified on vLLM >=0\.32,<0\.33 only, this is vLLM '0\.33\.0'"):
        plugin.register()
    assert AttentionBackendEnum.CPU_ATTN.get_path() == before


def test_prefix_cache_hook_is_installed_everywhere_vllm_calls_it():
    import vllm.v1.core.block_pool as block_pool
    import vllm.v1.core.kv_cache_utils as kv_cache_utils
    import vllm.v1.simple_kv_offload.manager as offload

    for module in (kv_cache_utils, block_pool, offload):
        assert plugin.is_hooked(module.generate_block_hash_extra_keys), module.__name__
    unwrapped = kv_cache_utils.generate_block_hash_extra_keys.__wrapped__
    holders = [name for name, m in list(sys.modules.items())
               if name.startswith("vllm") and getattr(m, "generate_block_hash_extra_keys", None) is unwrapped]
    assert holders == []


def test_prefix_cache_hook_fails_without_its_function(monkeypatch):
    import vllm.v1.core.kv_cache_utils as kv_cache_utils

    monkeypatch.delattr(kv_cache_utils, "generate_block_hash_extra_keys")
    with pytest.raises(RuntimeError, match=r"vllm\.v1\.core\.kv_cache_utils\.generate_block_hash_extra_keys not "
                                           "found"):
        plugin._hook_prefix_cache()


def test_prefix_cache_hook_fails_on_another_signature(monkeypatch):
    import vllm.v1.core.kv_cache_utils as kv_cache_utils

    monkeypatch.setattr(kv_cache_utils, "generate_block_hash_extra_keys", lambda req, start, end: ((), 0))
    with pytest.raises(RuntimeError, match=r"takes \['req', 'start', 'end'\]"):
        plugin._hook_prefix_cache()


def test_prefix_cache_hook_fails_when_a_caller_module_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm.v1.simple_kv_offload.manager", None)  # import now fails
    with pytest.raises(RuntimeError, match=r"cannot import vllm\.v1\.simple_kv_offload\.manager"):
        plugin._hook_prefix_cache()


def test_prefix_cache_hook_fails_when_a_caller_no_longer_imports_it(monkeypatch):
    import vllm.v1.core.block_pool as block_pool

    monkeypatch.delattr(block_pool, "generate_block_hash_extra_keys")
    with pytest.raises(RuntimeError, match=r"vllm\.v1\.core\.block_pool no longer imports"):
        plugin._hook_prefix_cache()


def test_wrap_names_what_is_missing():
    with pytest.raises(RuntimeError, match=r"vLLM has no SimpleNamespace\.gone"):
        plugin._wrap(SimpleNamespace, "gone", lambda original: original)


def _runner(cls, *backends):
    runner = object.__new__(cls)  # a real runner class; only what the check reads is set
    runner.attn_groups = [[SimpleNamespace(backend=b) for b in backends]]
    return runner


def test_worker_facts_on_real_runner_classes():
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend
    from vllm.v1.worker.cpu.model_runner import CPUModelRunner as CPUModelRunnerV2
    from vllm.v1.worker.cpu_model_runner import CPUModelRunner

    from segmask.vllm.backend import SegmentCPUAttentionBackend

    assert worker_problems(**plugin.runner_facts(_runner(CPUModelRunner, SegmentCPUAttentionBackend))) == []
    stock = worker_problems(**plugin.runner_facts(_runner(CPUModelRunner, CPUAttentionBackend)))
    assert stock == [f"attention backend {STOCK_CPU} does not compute MAS (expected {VERIFIED_BACKEND_CLS})"]
    v2 = worker_problems(**plugin.runner_facts(_runner(CPUModelRunnerV2, SegmentCPUAttentionBackend)))
    assert len(v2) == 1 and "vllm.v1.worker.cpu.model_runner.CPUModelRunner does not run" in v2[0]

    class Overriding(CPUModelRunner):  # a runner that replaces the hooked method
        def _build_attention_metadata(self, *args, **kwargs):
            return {}, None

    assert "does not run the plugin's" in worker_problems(**plugin.runner_facts(
        _runner(Overriding, SegmentCPUAttentionBackend)))[0]
    assert len(worker_problems(**plugin.runner_facts(None))) == 2


def test_batch_guard():
    from segmask.vllm.backend import batch_ranges

    with batch_ranges({}):  # a causal batch needs no builder
        pass
    with pytest.raises(RuntimeError, match=r"rows \[1\]\) but no segment-aware attention metadata builder"):
        with batch_ranges({1: [(0, 5)]}):
            pass  # no SegmentCPUAttentionMetadataBuilder.build ran
    with pytest.raises(KeyError):  # an error inside the block is not masked by the guard
        with batch_ranges({1: [(0, 5)]}):
            raise KeyError("inner")

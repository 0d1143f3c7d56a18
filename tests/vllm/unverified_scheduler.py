"""A custom vLLM scheduler (``--scheduler-cls tests.vllm.unverified_scheduler.OwnChunkScheduler``) that makes its own
last prefill-chunk cut, so the plugin's segment-boundary cut never runs: a route the plugin must refuse MAS on.
Used by ``test_refusal``; importing it needs vLLM."""

from vllm.v1.core.sched.scheduler import Scheduler


class OwnChunkScheduler(Scheduler):
    def _reserve_prefill_lookahead(self, request, num_computed_tokens, num_new_tokens):
        return max(num_new_tokens, 0)

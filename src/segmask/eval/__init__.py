"""Benchmarks for MAS vs causal models: commonsense tasks, generative and log-likelihood scoring, paired statistics.

    >>> from segmask.eval import evaluate, compare_runs, format_comparison
    >>> from segmask.eval.tasks import default_data_dir     # the folder `segmask data` fills
    >>> evaluate(model, tok, "boolq,piqa", default_data_dir(), protocol="loglik", limit=100,
    ...          out_dir="runs/mas")
    >>> print(format_comparison(compare_runs("runs/causal", "runs/mas")))

Modules: ``tasks`` (the task dict, answer extraction, seeded subsets), ``prompts`` (records -> prompts and
log-likelihood requests), ``scoring`` (batched generation and the one log-likelihood scorer, MAS or causal prefill),
``choice`` (option texts as continuations), ``protocols`` (generate, loglik, choice: records -> prediction rows),
``stats`` (Wilson CI, paired bootstrap, exact McNemar), ``run`` (``evaluate``, run folders, pick histograms,
``compare_runs``), ``lmeval`` (lm-evaluation-harness's ``segmask`` model type, needs ``segmask[lmeval]``).
"""

from .protocols import PROTOCOLS
from .run import compare_rows, compare_runs, evaluate, format_comparison, format_picks, format_summary, load_run
from .stats import mcnemar_exact, paired_bootstrap, paired_comparison, wilson_interval
from .tasks import TASKS, Task, available_tasks, get_task, load_records

__all__ = [
    "PROTOCOLS",
    "TASKS",
    "Task",
    "available_tasks",
    "compare_rows",
    "compare_runs",
    "evaluate",
    "format_comparison",
    "format_picks",
    "format_summary",
    "get_task",
    "load_records",
    "load_run",
    "mcnemar_exact",
    "paired_bootstrap",
    "paired_comparison",
    "wilson_interval",
]

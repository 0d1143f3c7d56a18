"""What the benchmark and study scripts under ``benchmarks/`` share: the timing loop, random-init models of real
shapes, the marked doc sections they write, the resumable job queue of a study, and adapter export.

The FLOP model they use is the one the prefill route choice uses (``segmask.core.cost``).
"""

from .docs import read_section, write_section
from .export import export_adapter
from .queue import Job, matches, print_plan, run_queue, select
from .shapes import SMOLLM2_135M, chat_segments, smollm2_shaped
from .timing import interleaved, machine, mmm

__all__ = ["Job", "SMOLLM2_135M", "chat_segments", "export_adapter", "interleaved", "machine", "matches", "mmm",
           "print_plan", "read_section", "run_queue", "select", "smollm2_shaped", "write_section"]

"""Training (layer 4): data rows -> examples (``data``), LoRA glue (``lora``), the Trainer loop (``trainer``), MAS
self-distillation (``adapt`` with its ``distill`` loss and ``prompt_pool``), and TRL's SFTTrainer under MAS (``trl``,
needs ``segmask[trl]``).

    >>> summary = train(TrainConfig(data=["../shared/data/commonsense"], output_dir="runs/mas", mask="mas"))
"""

from .state import LOSS_CURVE
from .trainer import LoopConfig, TrainConfig, build_data, run_trainer, start_model, train

__all__ = ["LOSS_CURVE", "LoopConfig", "TrainConfig", "build_data", "run_trainer", "start_model", "train"]

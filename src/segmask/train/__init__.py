"""Training (layer 4): data rows -> examples (``data``), LoRA glue (``lora``), the Trainer loop (``trainer``), MAS
self-distillation (``adapt`` with its ``distill`` loss and ``prompt_pool``), and TRL's SFTTrainer under MAS (``trl``,
needs ``segmask[trl]``).

    >>> from segmask.eval.tasks import default_data_dir    # the folder `segmask data` fills
    >>> data = str(default_data_dir())                      # every train.json below it: the commonsense_170k mixture
    >>> summary = train(TrainConfig(data=[data], output_dir="runs/mas", mask="mas"))
"""

from .state import LOSS_CURVE
from .trainer import LoopConfig, TrainConfig, build_data, run_trainer, start_model, train

__all__ = ["LOSS_CURVE", "LoopConfig", "TrainConfig", "build_data", "run_trainer", "start_model", "train"]

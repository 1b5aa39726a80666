"""Training for mlcl, built on LAVIS (salesforce-lavis, the `train` extra).

Importing this package registers into LAVIS's registry:
  model    "mlcl"                (training.models.mlcl_lavis.MLCLLavis; method via `model.method`)
  task     "composed_retrieval"  (training.tasks.composed_retrieval)
  builders "fashioniq", "cirr", "shoes", "shapes" (training.datasets.builders)
  runner   "runner_mlcl"         (training.runners.cpu_runner: works on a CPU-only machine and on one GPU)
  lr_sched "cosine_step_lr", "constant_lr", "cosine_warm_restarts_lr" (+ LAVIS's own)

Entry points: `mlcl train --config FILE` or `training.api.train(config_path, options)`.
Configs: training/configs/ (see docs/training.md).
"""

from __future__ import annotations

import warnings
from pathlib import Path

CONFIG_ROOT = Path(__file__).resolve().parent / "configs"

with warnings.catch_warnings():
    # LAVIS's import pulls in fairscale/timm, which warn about deprecated torch APIs.
    warnings.simplefilter("ignore", FutureWarning)
    warnings.simplefilter("ignore", UserWarning)
    import lavis  # noqa: F401  (registers LAVIS's paths; needed by its Config and builders)

from training.datasets import builders as _builders  # noqa: E402,F401
from training.models import mlcl_lavis as _models  # noqa: E402,F401
from training.runners import cpu_runner as _runners  # noqa: E402,F401
from training.runners import schedulers as _schedulers  # noqa: E402,F401
from training.tasks import composed_retrieval as _tasks  # noqa: E402,F401

__all__ = ["CONFIG_ROOT"]

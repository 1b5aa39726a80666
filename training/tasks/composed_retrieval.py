"""LAVIS task "composed_retrieval": the training step and the evaluation of MLCL.

Training: `train_epoch` runs the steps of one epoch with a tqdm bar (loss,
samples/s), mixed precision on CUDA when `run.amp`, optional gradient
clipping, and stops early when the run's budget (`run.max_steps`,
`run.max_minutes`) is spent.  Evaluation calls `mlcl.eval.evaluate.evaluate`
(the benchmark's official protocol) on the validation split; its headline
metric is LAVIS's `agg_metrics`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from lavis.tasks.base_task import BaseTask

from training.common import ImageSpec, to_plain
from training.registration import register_once

log = logging.getLogger(__name__)


@dataclass
class Budget:
    """When a run stops: a total number of optimizer steps and/or minutes of this invocation."""

    max_steps: int | None = None
    max_minutes: float | None = None
    started: float = field(default_factory=time.time)
    reason: str | None = None

    def exhausted(self, global_step: int) -> bool:
        if self.max_steps is not None and global_step >= self.max_steps:
            self.reason = f"run.max_steps={self.max_steps} reached"
        elif self.max_minutes is not None and (time.time() - self.started) >= 60.0 * self.max_minutes:
            self.reason = f"run.max_minutes={self.max_minutes} reached"
        return self.reason is not None


@dataclass
class EpochResult:
    stats: dict[str, float]
    steps: int  # optimizer steps done in this call
    next_step: int  # index of the next batch of this epoch (== steps per epoch when complete)
    complete: bool
    samples: int
    seconds: float
    interrupted: bool = False  # Ctrl-C: the runner saves a checkpoint, then re-raises


def move_to(samples: dict[str, Any], device: torch.device) -> dict[str, Any]:
    non_blocking = device.type == "cuda"
    return {k: (v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v) for k, v in samples.items()}


@register_once("task", "composed_retrieval")
class ComposedRetrievalTask(BaseTask):
    def __init__(self, run_cfg: Any = None):
        super().__init__()
        self.run_cfg = run_cfg
        self.image_spec: ImageSpec | None = None
        self._eval_dataset = None

    @classmethod
    def setup_task(cls, cfg: Any = None, **kwargs: Any) -> "ComposedRetrievalTask":
        return cls(cfg.run_cfg if cfg is not None else None)

    # ---------------------------------------------------------- building
    def build_model(self, cfg: Any):
        model = super().build_model(cfg)
        self.image_spec = ImageSpec.from_model(model.mlcl)
        return model

    def build_datasets(self, cfg: Any) -> dict[str, dict[str, Any]]:
        """{dataset name: {split: TripletDataset}}; images follow the model's preprocessing."""
        from lavis.common.registry import registry

        spec = self.image_spec or ImageSpec.from_model_cfg(to_plain(cfg.model_cfg))
        datasets: dict[str, dict[str, Any]] = {}
        if len(cfg.datasets_cfg) == 0:
            raise ValueError("the config names no data set (datasets: section)")
        for name in cfg.datasets_cfg:
            builder_cls = registry.get_builder_class(name)
            if builder_cls is None:
                raise KeyError(f"no dataset builder {name!r} registered; known: fashioniq, cirr, shoes, shapes")
            builder = builder_cls(cfg.datasets_cfg[name])
            builder.image_spec = spec
            datasets[name] = builder.build_datasets()
        return datasets

    # ---------------------------------------------------------- training
    def train_step(self, model: Any, samples: dict[str, Any]) -> dict[str, torch.Tensor]:
        return model(samples)

    def train_epoch(self, epoch: int, model: Any, data_loader: Any, optimizer: Any, lr_scheduler: Any,
                    scaler: Any = None, cuda_enabled: bool = False, log_freq: int = 50, accum_grad_iters: int = 1,
                    device: torch.device | None = None, start_step: int = 0, global_step: int = 0,
                    budget: Budget | None = None, progress: bool = True, grad_clip: float | None = None,
                    amp: bool = False) -> EpochResult:
        """One epoch (from batch `start_step`), as LAVIS's BaseTask.train_epoch but with a tqdm bar and a budget."""
        from tqdm.auto import tqdm

        device = device or (torch.device("cuda") if cuda_enabled else torch.device("cpu"))
        steps_per_epoch = len(data_loader)
        model.train()
        sums: dict[str, float] = {}
        samples_seen = steps = 0
        t0 = time.time()
        ema_loss = None
        bar = tqdm(total=steps_per_epoch, initial=start_step, desc=f"epoch {epoch}", unit="step",
                   disable=not progress, dynamic_ncols=True, leave=True)
        i = start_step
        complete = True
        interrupted = False
        use_amp = amp and device.type == "cuda"
        try:
            for samples in data_loader.epoch(epoch, start_step):
                if budget is not None and budget.exhausted(global_step + steps):
                    complete = False
                    break
                samples = move_to(samples, device)
                lr_scheduler.step(cur_epoch=epoch, cur_step=i)
                with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                    out = self.train_step(model, samples)
                loss = out["loss"]
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch} step {i}; lower run.init_lr")
                if scaler is not None:
                    scaler.scale(loss / accum_grad_iters).backward()
                else:
                    (loss / accum_grad_iters).backward()
                if (i + 1) % accum_grad_iters == 0:
                    if grad_clip:
                        if scaler is not None:
                            scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]],
                                                       grad_clip)
                    if scaler is not None:
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                i += 1  # the position a resume continues from
                steps += 1
                samples_seen += _batch_size(samples)
                for k, v in out.items():
                    if isinstance(v, torch.Tensor) and v.dim() == 0:
                        sums[k] = sums.get(k, 0.0) + float(v.detach())
                lv = float(loss.detach())
                ema_loss = lv if ema_loss is None else 0.9 * ema_loss + 0.1 * lv
                elapsed = time.time() - t0
                bar.update(1)
                bar.set_postfix(loss=f"{ema_loss:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}",
                                sps=f"{samples_seen / max(elapsed, 1e-9):.0f}", refresh=False)
                if not progress and log_freq and steps % log_freq == 0:
                    log.info("epoch %d step %d/%d loss %.4f (%.0f samples/s)", epoch, i, steps_per_epoch, ema_loss,
                             samples_seen / max(elapsed, 1e-9))
            else:
                complete = i >= steps_per_epoch
        except KeyboardInterrupt:
            # Stop cleanly at the last finished step: the runner saves a checkpoint, then re-raises.
            optimizer.zero_grad(set_to_none=True)
            complete, interrupted = False, True
        finally:
            bar.close()
        seconds = time.time() - t0
        stats = {k: v / max(steps, 1) for k, v in sums.items()}
        stats.update(lr=optimizer.param_groups[0]["lr"], samples_per_s=samples_seen / max(seconds, 1e-9),
                     steps=steps, seconds=seconds)
        return EpochResult(stats=stats, steps=steps, next_step=i, complete=complete, samples=samples_seen,
                           seconds=seconds, interrupted=interrupted)

    # -------------------------------------------------------- evaluation
    def before_evaluation(self, model: Any, dataset: Any, **kwargs: Any) -> None:
        self._eval_dataset = dataset

    def evaluation(self, model: Any, data_loader: Any = None, cuda_enabled: bool = True, **kwargs: Any) -> dict[str, Any]:
        """Metrics of the data set given to before_evaluation, by its official protocol."""
        if self._eval_dataset is None:
            raise RuntimeError("call before_evaluation(model, dataset) first")
        return self.evaluate_dataset(model, self._eval_dataset, **kwargs)

    def evaluate_dataset(self, model: Any, dataset: Any, encoder: Any = None, limit: int | None = None,
                         batch_size: int = 128, num_workers: int = 0, progress: bool = True) -> dict[str, Any]:
        """Run mlcl.eval on a TripletDataset's source split; `encoder` may wrap the plain model (feature memo)."""
        from mlcl.eval.evaluate import evaluate

        mlcl = encoder if encoder is not None else getattr(model, "mlcl", model)
        t0 = time.time()
        result = evaluate(mlcl, dataset.dataset_name, split=dataset.split, ds=dataset.source, limit=limit,
                          batch_size=batch_size, num_workers=num_workers, progress=progress)
        metrics = {k: float(v) for k, v in result.metrics.items()}
        return {"metrics": metrics, "seconds": time.time() - t0, "dataset": dataset.dataset_name,
                "split": dataset.split, "tasks": result.tasks}

    def after_evaluation(self, val_result: dict[str, Any], split_name: str = "val", epoch: Any = None,
                         **kwargs: Any) -> dict[str, Any]:
        metrics = val_result["metrics"]
        headline = metrics.get("headline", math.nan)
        return {"agg_metrics": headline, **metrics}


def _batch_size(samples: dict[str, Any]) -> int:
    for key in ("f_ref", "ref", "index"):
        v = samples.get(key)
        if isinstance(v, torch.Tensor):
            return int(v.shape[0])
    return 0

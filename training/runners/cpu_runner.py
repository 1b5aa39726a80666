"""LAVIS runner "runner_mlcl": RunnerBase, fixed for a CPU-only machine, for MLCL.

What LAVIS's RunnerBase gets wrong without a GPU, and what this runner does:
* its `model` property returns None unless the model has to move device ->
  the model is moved once and returned;
* its loaders wrap batches in a PrefetchLoader that creates a CUDA stream ->
  plain batches, moved with `.to(device)` (non-blocking on CUDA);
* it calls `dist.barrier()` after each epoch even when not distributed ->
  no barrier (this runner is single-process: one CPU or one GPU);
* its learning-rate schedulers are registered only when lavis.common.optims
  is imported -> imported (plus our step-based schedules);
* its output folder is relative to LAVIS's install folder -> run.output_dir
  is used as given (relative to the working directory);
* its IterLoader sleeps 2 s at every epoch boundary; GradScaler/autocast are
  CUDA-only -> epochs are iterated directly; AMP only on CUDA.
Also: per-group learning rates (MLCL's w), a step/time budget, resume
mid-epoch, the stage-2 feature cache, evaluation with mlcl.eval, and the
final mlcl checkpoint (`model.pt`).
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import random
import re
import time
from pathlib import Path
from typing import Any

import torch
from lavis.common.registry import registry
from lavis.runners.runner_base import RunnerBase

from training.common import ImageSpec, configure_threads, resolve_device, seed_everything, to_plain
from training.registration import register_once
from training.runners.schedulers import GroupScaled
from training.tasks.composed_retrieval import Budget

log = logging.getLogger(__name__)
RESUME_FORMAT = "mlcl-lavis-resume"
_CKPT_RE = re.compile(r"checkpoint_(\d+)\.pth$")


def build_optimizer(mlcl: Any, run: Any) -> torch.optim.Optimizer:
    """Adam/AdamW over the trainable parameters; w in its own group (run.w_lr)."""
    lr = float(run.get("init_lr", 1e-4))
    wd = float(run.get("weight_decay", 0.0))
    groups = mlcl.parameter_groups(lr, w_lr=float(run.get("w_lr", 1e-3)), weight_decay=wd)
    main, rest = groups[0], groups[1:]
    if run.get("no_decay_1d", True):  # LAVIS's convention: no decay on biases, norms and scalars
        decay = [p for p in main["params"] if p.ndim >= 2]
        no_decay = [p for p in main["params"] if p.ndim < 2]
        groups = [{"params": decay, "lr": lr, "weight_decay": wd}, {"params": no_decay, "lr": lr, "weight_decay": 0.0},
                  *rest]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("no trainable parameters (check the method's stage and model.train_text/train_image)")
    name = str(run.get("optimizer", "adamw")).lower()
    kwargs = {"lr": lr, "betas": (float(run.get("beta1", 0.9)), float(run.get("beta2", 0.999))),
              "eps": float(run.get("eps", 1e-8))}
    if name == "adamw":
        return torch.optim.AdamW(groups, **kwargs)
    if name == "adam":
        return torch.optim.Adam(groups, **kwargs)
    raise ValueError(f"run.optimizer must be adam or adamw, got {name!r}")


@register_once("runner", "runner_mlcl")
class MLCLRunner(RunnerBase):
    """Train/evaluate an MLCL model (stage 1 or 2) on one data set, on a CPU or one GPU."""

    def __init__(self, cfg: Any, task: Any, model: Any, datasets: dict[str, Any], job_id: str = ""):
        self.run_cfg = cfg.run_cfg
        configure_threads(self.run_cfg.get("num_threads"))
        super().__init__(cfg, task, model, datasets, job_id)
        if self.run_cfg.get("distributed", False):
            raise NotImplementedError("runner_mlcl is single-process (one CPU or one GPU); set run.distributed=false")
        self.progress = bool(self.run_cfg.get("progress", True))
        self.global_step = 0
        self.start_step = 0
        self.elapsed_before = 0.0
        self.best: dict[str, Any] = {"agg_metrics": None, "epoch": None, "metrics": None}
        self.last_metrics: dict[str, Any] | None = None
        self.feature_cache_meta: dict[str, Any] | None = None
        self._memo = None
        self._train_loader = None
        self.stopped_by = None
        self.train_dataset_name, self.train_dataset = self._single_train_dataset()
        self._bind_datasets()

    # ------------------------------------------------------------ plumbing
    @property
    def device(self) -> torch.device:
        if self._device is None:
            self._device = resolve_device(self.run_cfg.get("device", "auto"))
        return self._device

    @property
    def use_distributed(self) -> bool:
        return False

    @property
    def model(self) -> Any:
        if self._model.device != self.device:
            self._model = self._model.to(self.device)
        self._wrapped_model = self._model
        return self._model

    @property
    def mlcl(self) -> Any:
        return self.model.mlcl

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer is None:
            self._optimizer = build_optimizer(self.mlcl, self.run_cfg)
            n = sum(p.numel() for g in self._optimizer.param_groups for p in g["params"])
            log.info("trainable parameters: %d", n)
        return self._optimizer

    @property
    def amp(self) -> bool:
        return bool(self.run_cfg.get("amp", False)) and self.device.type == "cuda"

    @property
    def scaler(self) -> Any:
        if self.amp and self._scaler is None:
            self._scaler = torch.amp.GradScaler("cuda")
        return self._scaler

    @property
    def lr_scheduler(self) -> Any:
        if self._lr_sched is None:
            name = self.run_cfg.get("lr_sched", "cosine_step_lr")
            cls = registry.get_lr_scheduler_class(name)
            if cls is None:
                known = ", ".join(sorted(registry.mapping["lr_scheduler_name_mapping"]))
                raise KeyError(f"unknown run.lr_sched {name!r}; known: {known}")
            spe = len(self.train_loader)
            total = self.max_epoch * spe
            if self.run_cfg.get("max_steps"):
                total = min(total, int(self.run_cfg.max_steps))
            inner = cls(
                optimizer=self.optimizer, max_epoch=self.max_epoch, min_lr=float(self.run_cfg.get("min_lr", 0.0)),
                init_lr=self.init_lr, decay_rate=self.run_cfg.get("lr_decay_rate", None),
                warmup_start_lr=float(self.run_cfg.get("warmup_lr", -1)),
                warmup_steps=int(self.run_cfg.get("warmup_steps", 0)), iters_per_epoch=spe, total_steps=total,
                t0_epochs=int(self.run_cfg.get("t0_epochs", 10)),
            )
            self._lr_sched = GroupScaled(inner, self.optimizer, self.init_lr)
        return self._lr_sched

    @property
    def min_lr(self) -> float:
        return float(self.run_cfg.get("min_lr", 0.0))

    @property
    def evaluate_only(self) -> bool:
        return bool(self.run_cfg.get("evaluate_only", False))

    @property
    def valid_splits(self) -> list[str]:
        if not self.run_cfg.get("evaluate", True):
            return []
        return [s for s in self.run_cfg.get("valid_splits", ["val"]) if s in self.datasets_of(self.train_dataset_name)]

    def datasets_of(self, name: str) -> dict[str, Any]:
        return self.datasets[name]

    def setup_output_dir(self) -> None:
        output_dir = Path(self.config.run_cfg.output_dir).expanduser()
        if self.job_id:
            output_dir = output_dir / self.job_id
        result_dir = output_dir / "result"
        result_dir.mkdir(parents=True, exist_ok=True)
        # LAVIS registers these once per process; a second run in the same process replaces them.
        registry.mapping["paths"]["result_dir"] = str(result_dir)
        registry.mapping["paths"]["output_dir"] = str(output_dir)
        self.output_dir, self.result_dir = output_dir, result_dir

    def _single_train_dataset(self) -> tuple[str, Any]:
        names = [n for n, splits in self.datasets.items() if "train" in splits]
        if len(names) != 1:
            raise ValueError(f"runner_mlcl trains on exactly one data set with a train split; got {names or 'none'}")
        return names[0], self.datasets[names[0]]["train"]

    def _bind_datasets(self) -> None:
        spec = ImageSpec.from_model(self._model.mlcl)
        for splits in self.datasets.values():
            for ds in splits.values():
                ds.set_image_spec(spec)

    # ------------------------------------------------------------- loaders
    @property
    def use_feature_cache(self) -> bool:
        return self._model.stage == 2 and bool(self.run_cfg.get("cache_features", True))

    @property
    def train_loader(self) -> Any:
        if self._train_loader is None:
            self._train_loader = self._build_train_loader()
        return self._train_loader

    @property
    def dataloaders(self) -> dict[str, Any]:
        return {"train": self.train_loader}

    def _build_train_loader(self) -> Any:
        from training.datasets.base import TripletLoader

        run = self.run_cfg
        ds = self.train_dataset
        bs = int(run.batch_size_train)
        seed = int(run.get("seed", 42))
        workers = int(run.get("num_workers", 0))
        if self.use_feature_cache:
            from training.features import CachedFeatureLoader, build_feature_cache

            views = int(run.get("sscl_cached_views", 4)) if self._model.uses_sscl else 0
            if self._model.uses_sscl and views < 1:
                raise ValueError("run.sscl_cached_views must be >= 1 for a method with SSCL (or cache_features=false)")
            cache = build_feature_cache(
                self.mlcl, ds, views=views, batch_size=int(run.get("batch_size_eval", 256)), num_workers=workers,
                device=self.device, seed=seed, cache_dir=run.get("feature_cache_dir"), progress=self.progress)
            self.feature_cache_meta = {k: v for k, v in cache.meta.items() if k != "desc"}
            return CachedFeatureLoader(cache, bs, shuffle=True, drop_last=True, seed=seed, device=self.device)
        ds.return_aug = self._model.uses_sscl
        if hasattr(ds, "pixels") and getattr(ds, "preload", False):
            ds.pixels(num_workers=workers, progress=self.progress)
        return TripletLoader(ds, bs, shuffle=True, drop_last=True, num_workers=workers, seed=seed,
                             pin_memory=self.device.type == "cuda")

    # ------------------------------------------------------------ training
    def train(self) -> dict[str, Any]:
        start = time.time()
        seed_everything(int(self.run_cfg.get("seed", 42)))
        self.log_config()
        self._attach_file_log()
        try:
            if self.evaluate_only:
                return self._evaluate_only()
            resume = self.resume_ckpt_path
            if resume:
                self._load_checkpoint(resume)
            budget = Budget(self.run_cfg.get("max_steps"), self.run_cfg.get("max_minutes"), started=start)
            loader = self.train_loader
            self.lr_scheduler  # noqa: B018 (built now: needs the loader's length)
            log.info("training %s on %s/%s: %d triplets, %d steps per epoch, epochs %d..%d, device %s",
                     self.mlcl.method.name, self.train_dataset_name, self.train_dataset.split, len(self.train_dataset),
                     len(loader), self.start_epoch, self.max_epoch - 1, self.device)
            last_train: dict[str, Any] = {}
            epoch = self.start_epoch
            evaluated_current = False
            for epoch in range(self.start_epoch, self.max_epoch):
                if budget.exhausted(self.global_step):
                    break
                self._maybe_redraw_views(epoch)
                res = self.task.train_epoch(
                    epoch=epoch, model=self.model, data_loader=loader, optimizer=self.optimizer,
                    lr_scheduler=self.lr_scheduler, scaler=self.scaler, cuda_enabled=self.cuda_enabled,
                    log_freq=self.log_freq, accum_grad_iters=self.accum_grad_iters, device=self.device,
                    start_step=self.start_step, global_step=self.global_step, budget=budget, progress=self.progress,
                    grad_clip=self.run_cfg.get("grad_clip"), amp=self.amp)
                self.global_step += res.steps
                self.start_step = 0 if res.complete else res.next_step
                if res.interrupted:
                    path = self._save_checkpoint(epoch, complete=False, elapsed=self.elapsed_before + time.time() - start)
                    log.warning("interrupted at epoch %d step %d; saved %s (continue with --resume auto)", epoch,
                                res.next_step, path)
                    raise KeyboardInterrupt
                last_train = {**res.stats, "epoch": epoch, "global_step": self.global_step, "complete": res.complete}
                self.log_stats(split_name="train", stats=last_train)
                log.info("epoch %d%s: loss %.4f, %.0f samples/s, %d steps in %.1f s", epoch,
                         "" if res.complete else f" (stopped at step {res.next_step})", res.stats.get("loss", math.nan),
                         res.stats["samples_per_s"], res.steps, res.seconds)
                evaluated_current = False
                last_epoch = epoch == self.max_epoch - 1 or not res.complete or budget.exhausted(self.global_step)
                every = max(1, int(self.run_cfg.get("evaluate_every", 1)))
                if self.valid_splits and ((epoch + 1) % every == 0 or last_epoch):
                    self._validate(epoch)
                    evaluated_current = True
                self._save_checkpoint(epoch, complete=res.complete, elapsed=self.elapsed_before + time.time() - start)
                if not res.complete or budget.exhausted(self.global_step):
                    break
            self.stopped_by = budget.reason or "run.max_epoch reached"
            if self.valid_splits and not evaluated_current and self.global_step > 0:
                self._validate(epoch)
            total = self.elapsed_before + time.time() - start
            summary = self._export(total, last_train)
            log.info("training done in %s (%s); model: %s", datetime.timedelta(seconds=int(total)), self.stopped_by,
                     summary["checkpoint"])
            return summary
        finally:
            self._detach_file_log()

    def _maybe_redraw_views(self, epoch: int) -> None:
        """run.sscl_redraw_every: N > 0 re-draws the cached SSCL views at the start of every N-th epoch."""
        every = int(self.run_cfg.get("sscl_redraw_every") or 0)
        loader = self.train_loader
        if every <= 0 or epoch == 0 or epoch % every or not hasattr(loader, "cache") or loader.cache.f_aug is None:
            return
        from training.features import redraw_sscl_views

        seed = int(self.run_cfg.get("seed", 42)) * 1000 + epoch
        redraw_sscl_views(loader.cache, self.mlcl, self.train_dataset, seed,
                          batch_size=int(self.run_cfg.get("batch_size_eval", 256)), device=self.device)
        log.info("epoch %d: re-drew the %d cached SSCL views (seed %d)", epoch, loader.cache.views, seed)

    # ---------------------------------------------------------- evaluation
    def _encoder(self) -> Any:
        if self._model.stage == 2 and self.run_cfg.get("memo_eval_features", True):
            from training.features import FrozenFeatureMemo

            if self._memo is None:
                self._memo = FrozenFeatureMemo(self.mlcl)
            return self._memo
        return None

    def eval_epoch(self, split_name: str, cur_epoch: Any, skip_reload: bool = False) -> dict[str, Any]:
        ds = self.datasets_of(self.train_dataset_name).get(split_name)
        if ds is None:
            raise KeyError(f"no {split_name!r} split built for {self.train_dataset_name}; add it to datasets.*.splits")
        model = self.model
        self.task.before_evaluation(model=model, dataset=ds)
        res = self.task.evaluation(
            model, None, encoder=self._encoder(), limit=self.run_cfg.get("eval_limit"),
            batch_size=int(self.run_cfg.get("batch_size_eval", 128)),
            num_workers=int(self.run_cfg.get("num_workers", 0)), progress=self.progress)
        model.train()
        out = self.task.after_evaluation(val_result=res, split_name=split_name, epoch=cur_epoch)
        out["eval_seconds"] = res["seconds"]
        return out

    def _validate(self, epoch: int) -> None:
        for split in self.valid_splits:
            val = self.eval_epoch(split, epoch)
            agg = val["agg_metrics"]
            log.info("epoch %d %s: headline %.2f (%s)", epoch, split, agg,
                     ", ".join(f"{k} {v:.2f}" for k, v in val.items() if k.startswith("R")))
            if split == self.valid_splits[0]:
                self.last_metrics = {k: v for k, v in val.items() if k not in ("agg_metrics", "eval_seconds")}
                if self.best["agg_metrics"] is None or agg > self.best["agg_metrics"]:
                    self.best = {"agg_metrics": agg, "epoch": epoch, "metrics": self.last_metrics}
                    self._save_checkpoint(epoch, complete=True, elapsed=None, is_best=True)
            self.log_stats(split_name=split, stats={**val, "epoch": epoch, "best_epoch": self.best["epoch"]})

    def _evaluate_only(self) -> dict[str, Any]:
        splits = list(self.run_cfg.get("valid_splits", ["val"])) + list(self.run_cfg.get("test_splits", []))
        results = {}
        for split in dict.fromkeys(splits):
            if split in self.datasets_of(self.train_dataset_name):
                results[split] = self.eval_epoch(split, "evaluate_only")
                self.log_stats(split_name=split, stats=results[split])
        return {"output_dir": str(self.output_dir), "metrics": results}

    # --------------------------------------------------------- checkpoints
    def _trainable_state(self) -> dict[str, torch.Tensor]:
        model = self.model
        grad = {k: p.requires_grad for k, p in model.named_parameters()}
        return {k: v.detach().cpu() for k, v in model.state_dict().items() if grad.get(k, True)}

    def _save_checkpoint(self, cur_epoch: int, is_best: bool = False, complete: bool = True,
                         elapsed: float | None = None) -> Path:
        """LAVIS-style checkpoint: trainable weights (+ buffers), optimizer, scaler, position, RNG."""
        obj = {
            "format": RESUME_FORMAT,
            "model": self._trainable_state(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "config": self.config.to_dict(),
            "epoch": cur_epoch,
            "epoch_complete": complete,
            "next_step": 0 if complete else self.start_step,
            "global_step": self.global_step,
            "elapsed": elapsed if elapsed is not None else self.elapsed_before,
            "best": to_plain(self.best),
            "init_from": to_plain(self._model.init_info),
            "rng": {"torch": torch.get_rng_state(), "python": list(_py_state())},
        }
        path = self.output_dir / ("checkpoint_best.pth" if is_best else f"checkpoint_{cur_epoch}.pth")
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(obj, tmp)
        os.replace(tmp, path)
        if not is_best:
            self._prune_checkpoints()
        return path

    def _prune_checkpoints(self) -> None:
        keep = int(self.run_cfg.get("keep_checkpoints", 2))
        if keep <= 0:
            return
        found = sorted((int(m.group(1)), p) for p in self.output_dir.iterdir() if (m := _CKPT_RE.search(p.name)))
        for _, p in found[:-keep]:
            p.unlink(missing_ok=True)

    def latest_checkpoint(self) -> Path | None:
        found = sorted((int(m.group(1)), p) for p in self.output_dir.iterdir() if (m := _CKPT_RE.search(p.name)))
        return found[-1][1] if found else None

    def _load_state(self, state: dict[str, torch.Tensor], source: str) -> None:
        model = self.model
        frozen = {k for k, p in model.named_parameters() if not p.requires_grad}
        result = model.load_state_dict(state, strict=False)
        missing = set(result.missing_keys) - frozen
        if missing or result.unexpected_keys:
            raise RuntimeError(f"{source} does not fit this model: missing {sorted(missing)[:5]}, "
                               f"unexpected {sorted(result.unexpected_keys)[:5]} (same config and method?)")

    def _load_checkpoint(self, url_or_filename: str) -> None:
        """Resume: weights, optimizer, scaler, epoch/step position, best metric, RNG ("auto" = latest here)."""
        if str(url_or_filename) == "auto":
            path = self.latest_checkpoint()
            if path is None:
                log.info("resume=auto: no checkpoint in %s, starting fresh", self.output_dir)
                return
        else:
            path = Path(url_or_filename)
            if not path.is_file():
                raise FileNotFoundError(f"resume checkpoint {path} does not exist")
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        if ckpt.get("format") != RESUME_FORMAT:
            raise ValueError(f"{path} is not a checkpoint of runner_mlcl (no format {RESUME_FORMAT!r})")
        was = (ckpt.get("init_from") or {}).get("path")
        now = (self._model.init_info or {}).get("path")
        if was != now:
            log.warning("resuming a run whose backbone came from %s with model.init_from=%s", was, now)
        self._load_state(ckpt["model"], str(path))
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        if ckpt["epoch_complete"]:
            self.start_epoch, self.start_step = ckpt["epoch"] + 1, 0
        else:
            self.start_epoch, self.start_step = ckpt["epoch"], int(ckpt["next_step"])
        self.global_step = int(ckpt["global_step"])
        self.elapsed_before = float(ckpt.get("elapsed") or 0.0)
        self.best = ckpt.get("best") or self.best
        rng = ckpt.get("rng") or {}
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "python" in rng:
            random.setstate(_to_py_state(rng["python"]))
        log.info("resumed from %s: epoch %d, step %d, global step %d", path, self.start_epoch, self.start_step,
                 self.global_step)

    # -------------------------------------------------------------- export
    def _export(self, total_seconds: float, last_train: dict[str, Any]) -> dict[str, Any]:
        """Write the run's result: one mlcl checkpoint (model.pt) + summary.json."""
        from mlcl.model import save_checkpoint

        export = str(self.run_cfg.get("export", "best"))
        metrics = self.last_metrics
        exported = "last"
        best_path = self.output_dir / "checkpoint_best.pth"
        if export == "best" and self.best.get("epoch") is not None and best_path.is_file():
            ckpt = torch.load(best_path, map_location="cpu", weights_only=False)
            self._load_state(ckpt["model"], str(best_path))
            metrics, exported = self.best["metrics"], f"best (epoch {self.best['epoch']})"
        mlcl = self.mlcl
        extra = to_plain({
            "config": self.config.to_dict(),
            "dataset": self.train_dataset_name,
            "train_split": self.train_dataset.split,
            "method": mlcl.method.name,
            "stage": mlcl.stage,
            "steps": self.global_step,
            "epochs": last_train.get("epoch", -1) + (1 if last_train.get("complete") else 0),
            "wall_time_s": round(total_seconds, 2),
            "stopped_by": self.stopped_by,
            "metrics": metrics,
            "metrics_split": self.valid_splits[0] if self.valid_splits and metrics else None,
            "exported": exported,
            "train_loss": last_train.get("loss"),
            "samples_per_s": last_train.get("samples_per_s"),
            "init_from": self._model.init_info,
            "feature_cache": self.feature_cache_meta,
            "augment": self.train_dataset.augment.describe() if self._model.uses_sscl else None,
            "device": str(self.device),
            "torch_threads": torch.get_num_threads(),
        })
        name = str(self.run_cfg.get("export_name", "model.pt"))
        path = save_checkpoint(mlcl, self.output_dir / name, extra=extra, half=bool(self.run_cfg.get("export_half", False)))
        summary = {"output_dir": str(self.output_dir), "checkpoint": str(path), **{k: v for k, v in extra.items() if k != "config"}}
        (self.output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary

    # ------------------------------------------------------------- logging
    def _attach_file_log(self) -> None:
        self._file_handler = logging.FileHandler(self.output_dir / "train.log")
        self._file_handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(self._file_handler)
        self._old_level = root.level
        if root.level > logging.INFO or root.level == logging.NOTSET:
            root.setLevel(logging.INFO)

    def _detach_file_log(self) -> None:
        handler = getattr(self, "_file_handler", None)
        if handler is not None:
            root = logging.getLogger()
            root.removeHandler(handler)
            root.setLevel(self._old_level)
            handler.close()
            self._file_handler = None

    def log_stats(self, stats: dict[str, Any], split_name: str) -> None:
        with open(self.output_dir / "log.txt", "a") as f:
            f.write(json.dumps({f"{split_name}_{k}": v for k, v in to_plain(stats).items()}) + "\n")

    def log_config(self) -> None:
        with open(self.output_dir / "log.txt", "a") as f:
            f.write(json.dumps(to_plain(self.config.to_dict()), indent=4) + "\n")


def _py_state() -> tuple:
    version, state, gauss = random.getstate()
    return version, list(state), gauss


def _to_py_state(saved: Any) -> tuple:
    version, state, gauss = saved
    return version, tuple(state), gauss

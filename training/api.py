"""Run a training config programmatically (what `mlcl train` calls).

    from training.api import train
    summary = train("training/configs/shapes/stage1.yaml", ["run.max_epoch=1"])
    summary["checkpoint"]   # the mlcl checkpoint (model.pt) of the run
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

log = logging.getLogger(__name__)
DEFAULT_TASK = "composed_retrieval"
DEFAULT_RUNNER = "runner_mlcl"


def resolve_config_path(path: str | Path) -> Path:
    """A file path, or a path relative to training/configs/ ("shapes/stage1.yaml" or "shapes/stage1")."""
    from training import CONFIG_ROOT

    p = Path(path).expanduser()
    if p.is_file():
        return p
    for candidate in (CONFIG_ROOT / p, CONFIG_ROOT / f"{p}.yaml"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"config {str(path)!r} not found (nor under {CONFIG_ROOT})")


def _config_class() -> type:
    from lavis.common.config import Config
    from omegaconf import OmegaConf

    class MLCLConfig(Config):
        """LAVIS's Config, except that `--options model.model_type=X` also picks X's default model file
        (LAVIS looks the override up under a flat "model.model_type" key that its dotlist never has)."""

        @staticmethod
        def build_model_config(config: Any, **kwargs: Any) -> Any:
            model_type = OmegaConf.select(OmegaConf.create(dict(kwargs)), "model.model_type", default=None)
            if model_type:
                config = OmegaConf.merge(config, {"model": {"model_type": model_type}})
            return Config.build_model_config(config)

    return MLCLConfig


def load_config(config_path: str | Path, options: Sequence[str] = ()) -> Any:
    """LAVIS Config: the run file merged over the model's and data sets' defaults, then `options` (key=value)."""
    import training  # noqa: F401  (registers the model, task, builders, runner)

    bad = [o for o in options if "=" not in o]
    if bad:
        raise ValueError(f"options must be key=value, got {bad}")
    path = str(resolve_config_path(config_path))
    check_options(path, options)
    cfg = _config_class()(SimpleNamespace(cfg_path=path, options=list(options)))
    run = cfg.run_cfg
    if run.get("task") is None:
        run.task = DEFAULT_TASK
    if run.get("runner") is None:
        run.runner = DEFAULT_RUNNER
    if run.get("output_dir") is None:
        raise ValueError("run.output_dir is not set (pass --output DIR)")
    return cfg


def check_options(config_path: str | Path, options: Sequence[str]) -> None:
    """Refuse an option key that neither the merged config nor training/configs/schema.yaml knows
    (ValueError naming the closest known key): LAVIS would store it and train without it."""
    if not options:
        return
    from omegaconf import OmegaConf

    from training.options import check_option_keys

    plain = _config_class()(SimpleNamespace(cfg_path=str(config_path), options=[]))
    check_option_keys(options, OmegaConf.to_container(plain.config, resolve=False))


def _check_output_dir(cfg: Any) -> None:
    run = cfg.run_cfg
    out = Path(run.output_dir).expanduser()
    if not out.is_dir() or run.get("resume_ckpt_path") or run.get("evaluate_only"):
        return
    previous = sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint_") or p.name == "model.pt")
    if not previous:
        return
    if not run.get("overwrite", False):
        raise FileExistsError(
            f"{out} holds an earlier run ({', '.join(previous[:3])}...): pass --resume auto to continue it, "
            "--overwrite to start over there, or another --output"
        )
    for name in previous + ["summary.json"]:
        (out / name).unlink(missing_ok=True)


def build(cfg: Any) -> Any:
    """(runner) for a loaded config: task, model, data sets, runner, as LAVIS's train.py builds them."""
    from lavis.common.registry import registry
    from lavis.tasks import setup_task

    from training.common import configure_threads, seed_everything

    configure_threads(cfg.run_cfg.get("num_threads"))
    seed_everything(int(cfg.run_cfg.get("seed", 42)))
    task = setup_task(cfg)
    model = task.build_model(cfg)  # first, so the data sets follow the model's preprocessing
    datasets = task.build_datasets(cfg)
    runner_cls = registry.get_runner_class(cfg.run_cfg.runner)
    if runner_cls is None:
        raise KeyError(f"unknown run.runner {cfg.run_cfg.runner!r}")
    return runner_cls(cfg=cfg, task=task, model=model, datasets=datasets, job_id="")


def train(config_path: str | Path, options: Sequence[str] = ()) -> dict[str, Any]:
    """Train (or evaluate, with run.evaluate_only) per the config; returns the run's summary
    (output_dir, checkpoint, steps, wall_time_s, metrics, ...)."""
    cfg = load_config(config_path, options)
    _check_output_dir(cfg)
    from omegaconf import OmegaConf

    from mlcl.preflight import check_training_inputs

    check_training_inputs(OmegaConf.to_container(cfg.config, resolve=True))  # data root, pretrained: before any download
    runner = build(cfg)
    return runner.train()

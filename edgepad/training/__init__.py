"""Config-driven, seeded training of the fusion models (needs torch when run; importable without it).

``train(cfg)`` runs the loop: seeding, data (``edgepad.data`` loaders → transforms → ``preprocess.normalise``),
model (``create_model``), objective (``edgepad.losses.PADObjective``), optimizer + scheduler, AMP on CUDA,
DistributedDataParallel under ``torchrun``, dev evaluation with a named selection criterion (``edgepad.metrics``),
checkpoints ``last.pt`` / ``best.pt`` and a metrics log: JSONL + CSV (+ TensorBoard when importable).

Modules: :mod:`~edgepad.training.config` (the ``*Config`` dataclasses, :func:`load_train_config`),
:mod:`~edgepad.training.build` (input specs, transforms, datasets, model, objective, optimizer),
:mod:`~edgepad.training.loop` (:func:`train`, :func:`predict`, :func:`throughput`, the metrics log),
:mod:`~edgepad.training.export` (checkpoint → ONNX with dev operating points).

Run folder: ``config.yaml`` (resolved), ``last.pt``, ``best.pt``, ``metrics.jsonl``, ``metrics.csv``, ``tb/``
(optional), ``training_curves.png`` (with matplotlib: :mod:`~edgepad.training.plots`).
Checkpoint: ``{"model", "model_kwargs", "state_dict", "inputs", "objective", "optimizer",
"scheduler", "scaler", "epoch", "epoch_1based", "best", "rng", "config"}`` (``epoch`` 0-based for
``--resume``, ``epoch_1based`` as printed), read back by ``edgepad.models.checkpoint``
(docs/MODELS.md).
"""
from edgepad.models.checkpoint import load_checkpoint
from edgepad.data.sources import build_dataset
from edgepad.training.build import (build_model, build_objective, build_optimizer, input_specs,
                                    train_transform)
from edgepad.training.config import (DEFAULT_SUBSETS, AugmentConfig, DataConfig, ExportConfig, InputConfig,
                                     LossConfig, ModelConfig, OptimConfig, TrainConfig, load_train_config)
from edgepad.training.export import (WithoutModalities, export_checkpoint, export_checkpoint_onnx,
                                     fit_operating_points)
from edgepad.training.loop import (EpochSampler, predict, recalibrate_bn, seed_everything, selection_value,
                                   throughput, train)
from edgepad.training.plots import CURVES_PNG, plot_training_curves

__all__ = ["AugmentConfig", "CURVES_PNG", "plot_training_curves",
           "DataConfig", "DEFAULT_SUBSETS", "EpochSampler", "ExportConfig", "InputConfig",
           "LossConfig", "ModelConfig", "OptimConfig", "TrainConfig", "WithoutModalities", "build_dataset",
           "build_model", "build_objective", "build_optimizer", "export_checkpoint", "export_checkpoint_onnx",
           "fit_operating_points", "input_specs", "load_checkpoint", "load_train_config", "predict", "recalibrate_bn",
           "seed_everything", "selection_value", "throughput", "train", "train_transform"]

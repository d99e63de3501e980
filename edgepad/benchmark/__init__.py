"""The synthetic PAD benchmark (accuracy): generate data, train the matrix, evaluate, write the tables.

One command, ``edgepad benchmark configs/benchmark/matrix.yaml --out runs/bench``, does everything:

1. **Data.** :func:`edgepad.benchmark.dataset.generate` with the matrix's ``data`` config into
   ``<out>/data-<hash12>``; a folder whose ``meta.json`` has the same generator version and config (same *data
   hash*) is reused.
2. **Training.** Every (model preset, training rows, seed) of the experiments is one ``edgepad.training.train``
   run in ``<out>/runs/<preset>-s<seed>-<key10>``. The key hashes the resolved training config, the data hash and
   the protocol's train/dev rows, so protocols with identical training data (grandtest, X_sensor, X_illuminant)
   share one trained model. A finished run has ``done.json``; an interrupted one resumes from ``last.pt``.
3. **Evaluation.** ``best.pt`` (selected on dev by the training config's ``select`` criterion) scores the dev and
   eval folds with ``edgepad.training.predict`` on the same ``preprocess.normalise`` path as the runtime; frames
   are averaged to videos (``level: video``); τ is fitted on **dev** with the named criterion (``bpcer20`` by
   default) and applied unchanged to eval (``edgepad.evaluation.evaluate_scores``). Missing-modality
   sub-protocols P1–P3 drop modalities at test time (the model's ``missing_fill`` is written by ``normalise``)
   and are evaluated twice: τ from the same sub-protocol's dev, and τ from P4's dev (:func:`p4_threshold_results`).
   Each (run, protocol, sub-protocols) result is cached in ``<out>/results/<key>.json``: a rerun skips it.
4. **Tables.** :func:`render_tables` writes Markdown (mean ± population std over seeds, ddof = 0) into
   ``<out>/RESULTS.md`` and, with ``doc=...``, between the generated-section markers of ``docs/RESULTS.md``;
   :func:`~edgepad.benchmark.chart.acer_chart` draws ``<out>/acer_by_model.png`` (ACER per model and protocol,
   with matplotlib).

Modules: :mod:`~edgepad.benchmark.dataset` (the synthetic dataset generator, ``edgepad synth``),
:mod:`~edgepad.benchmark.matrix` (matrix config, hashes), :mod:`~edgepad.benchmark.runs` (data, training),
:mod:`~edgepad.benchmark.scoring` (evaluation), :mod:`~edgepad.benchmark.tables` (Markdown),
:mod:`~edgepad.benchmark.chart` (the ACER chart),
:mod:`~edgepad.benchmark.run` (:func:`run_benchmark`). Needs torch and h5py when run; the package imports with
numpy only. docs/SYNTHETIC.md and docs/RESULTS.md describe the data and the results.
"""
from __future__ import annotations

from edgepad.benchmark.chart import CHART_PNG, acer_chart, acer_table
from edgepad.benchmark.dataset import (CHANNELS, CROSS_DOMAINS, FOLDS, SynthDatasetConfig, VideoSpec, attack_type,
                                      generate, plan_videos, protocols, render_video, species_counts, write_video)
from edgepad.benchmark.matrix import (SUBPROTOCOLS, Experiment, MatrixConfig, QuickConfig, apply_quick, data_hash,
                                      dataset_config, deep_merge, expand_protocols, git_revision, load_matrix,
                                      meta_hash, sha)
from edgepad.benchmark.run import RESULT_VERSION, BenchmarkResult, plan, run_benchmark
from edgepad.benchmark.runs import (balanced_protocol, ensure_data, ensure_trained, protocol_rows, run_key,
                                    train_mapping, train_rows_hash)
from edgepad.benchmark.scoring import compact, evaluate_run, p4_threshold_results, score_fold, summarise
from edgepad.benchmark.tables import (BEGIN_MARK, END_MARK, fmt_ms, md_table, mean_std, pct, render_budget,
                                      render_experiment, render_tables, update_doc)

__all__ = ["BEGIN_MARK", "BenchmarkResult", "CHART_PNG", "CHANNELS", "CROSS_DOMAINS", "END_MARK", "Experiment", "FOLDS",
           "MatrixConfig", "QuickConfig", "RESULT_VERSION", "SUBPROTOCOLS", "SynthDatasetConfig", "VideoSpec",
           "acer_chart", "acer_table",
           "apply_quick", "attack_type", "balanced_protocol", "compact", "data_hash", "dataset_config", "deep_merge",
           "ensure_data", "ensure_trained", "evaluate_run", "expand_protocols", "fmt_ms", "generate", "git_revision",
           "load_matrix", "md_table", "mean_std", "meta_hash", "p4_threshold_results", "pct", "plan", "plan_videos",
           "protocol_rows", "protocols", "render_budget", "render_experiment", "render_tables", "render_video",
           "run_benchmark", "run_key", "score_fold", "sha", "species_counts", "summarise", "train_mapping",
           "train_rows_hash", "update_doc", "write_video"]

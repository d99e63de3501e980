"""The benchmark matrix (``configs/benchmark/matrix.yaml``): experiments, quick overrides, the protocols they name,
and the hashes that identify generated data (docs/SYNTHETIC.md, docs/RESULTS.md)."""
from __future__ import annotations

import copy
import dataclasses
import fnmatch
import hashlib
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from edgepad.benchmark.dataset import LATE_CONFIG_FIELDS, GENERATOR_VERSION, SynthDatasetConfig, config_mapping
from edgepad.config import from_mapping, read_mapping, suggest
from edgepad.errors import ConfigError
from edgepad.metrics import DEFAULT_THRESHOLD_RULE, THRESHOLD_RULES

#: preset keys the benchmark reads itself (not ``TrainConfig`` fields): ``train_with`` = protocols whose **train**
#: rows are added to the training rows of every protocol the preset is trained for (dev and eval unchanged);
#: ``train_on`` = one protocol whose train + dev rows train the model and whose dev fold places τ, whatever protocol
#: is evaluated (its eval fold only): one model and one τ scored on several eval sets, as a shipped model is
PRESET_KEYS = ("train_with", "train_on")

#: Missing-modality sub-protocols (Flex-Modal): the modalities presented at test time.
SUBPROTOCOLS: dict[str, tuple[str, ...]] = {"P1": ("rgb",), "P2": ("rgb", "depth"), "P3": ("rgb", "ir"),
                                            "P4": ("rgb", "depth", "ir")}


@dataclass(frozen=True)
class Experiment:
    """One comparison of the matrix.

    Attributes:
        name: identifier (table anchor).
        title: table heading.
        table: layout: ``models`` (rows = models, one block per protocol), ``protocols`` (rows = protocols,
            columns = models, LOO mean ± std line) or ``subsets`` (rows = P1–P4, τ from own dev and from P4 dev).
        models: model preset names.
        protocols: protocol names or shell patterns (``LOO_*``) matched against the generated protocols.
        subsets: sub-protocols (``P1``…``P4``) for ``table: subsets``; needs modality-dropout-capable models.
        per_species: also write the per-species APCER table.
        seeds: seeds of this experiment (None = the matrix's seeds).
        question: the claim the experiment checks (printed above the table).
        target_acer: a target ACER to report against (e.g. 0.01), or None.
    """

    name: str
    title: str = ""
    table: Literal["models", "protocols", "subsets"] = "models"
    models: tuple[str, ...] = ()
    protocols: tuple[str, ...] = ("grandtest",)
    subsets: tuple[str, ...] = ()
    per_species: bool = False
    seeds: tuple[int, ...] | None = None
    question: str = ""
    target_acer: float | None = None


@dataclass(frozen=True)
class QuickConfig:
    """``--quick`` overrides: a tiny benchmark, tiny models, one epoch (tests, smoke runs)."""

    data: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    experiments: tuple[str, ...] | None = None
    seeds: tuple[int, ...] | None = None


@dataclass(frozen=True)
class MatrixConfig:
    """The benchmark matrix (``configs/benchmark/matrix.yaml``).

    Attributes:
        data: :class:`~edgepad.benchmark.dataset.SynthDatasetConfig` fields.
        data_workers: processes for data generation.
        train: ``edgepad.training.TrainConfig`` fields shared by every run (the training budget).
        models: preset name -> TrainConfig fields deep-merged over ``train`` (``model``, ``loss``, …), plus
            ``train_with`` / ``train_on`` (:data:`PRESET_KEYS`): e.g. ``train_with: [grandtest]`` trains X_physics on
            nominal ∪ ``dr``; ``train_on: X_physics`` scores that one model (τ from the ``dr`` dev) on grandtest's
            eval fold too.
        experiments: the comparisons.
        criterion: threshold criterion fitted on dev (``bpcer20``, ``apcer100``, ``eer`` …).
        threshold_rule: where τ is placed on dev (:func:`edgepad.metrics.place_threshold`; default the export's
            rule, ``gap_logit``); the results and tables record it.
        level: ``video`` (mean of frame scores per video) or ``frame``.
        seeds: training seeds (results: mean ± population std over seeds).
        balance: oversample bona fide training videos to about the attack count (each bona fide train row
            repeated ``round(#attack rows / #bona fide rows)`` times in a derived protocol file; dev and eval rows
            untouched). The synthetic benchmark has 7 attack species per bona fide class.
        quick: overrides for ``--quick``.
    """

    data: dict[str, Any] = field(default_factory=dict)
    data_workers: int = 1
    train: dict[str, Any] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    experiments: tuple[Experiment, ...] = ()
    criterion: str = "bpcer20"
    threshold_rule: str = DEFAULT_THRESHOLD_RULE
    level: Literal["video", "frame"] = "video"
    seeds: tuple[int, ...] = (0,)
    balance: bool = False
    quick: QuickConfig = field(default_factory=QuickConfig)

    def __post_init__(self) -> None:
        names = [e.name for e in self.experiments]
        if len(set(names)) != len(names):
            raise ConfigError(f"experiment names must be unique: {names}", key="experiments")
        for e in self.experiments:
            for m in e.models:
                if m not in self.models:
                            raise ConfigError(f"experiment {e.name!r} uses unknown model preset {m!r}",
                                      key=f"experiments.{e.name}.models", suggestions=suggest(m, self.models))
            bad = [s for s in e.subsets if s not in SUBPROTOCOLS]
            if bad:
                raise ConfigError(f"experiment {e.name!r}: unknown sub-protocols {bad}; known {list(SUBPROTOCOLS)}",
                                  key=f"experiments.{e.name}.subsets")
            if e.table == "subsets" and not e.subsets:
                raise ConfigError(f"experiment {e.name!r}: table 'subsets' needs subsets", key="subsets")
        if not self.seeds:
            raise ConfigError("seeds must not be empty", key="seeds")
        if self.threshold_rule not in THRESHOLD_RULES:
            raise ConfigError(f"unknown threshold_rule {self.threshold_rule!r}; known {list(THRESHOLD_RULES)}",
                              key="threshold_rule", suggestions=suggest(self.threshold_rule, THRESHOLD_RULES))
        for name, preset in self.models.items():
            tw = preset.get("train_with", [])
            if not isinstance(tw, (list, tuple)) or not all(isinstance(p, str) for p in tw):
                raise ConfigError(f"model preset {name!r}: train_with must be a list of protocol names",
                                  key=f"models.{name}.train_with")
            if not isinstance(preset.get("train_on", ""), str):
                raise ConfigError(f"model preset {name!r}: train_on must be one protocol name",
                                  key=f"models.{name}.train_on")


def load_matrix(path: Path | str, *, quick: bool = False) -> MatrixConfig:
    """Load a matrix YAML/JSON; with ``quick`` apply its ``quick`` overrides."""
    path = Path(path)
    cfg = from_mapping(MatrixConfig, read_mapping(path), base=path.resolve().parent)
    return apply_quick(cfg) if quick else cfg


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge (``over`` wins; nested mappings merge, everything else replaces)."""
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def apply_quick(cfg: MatrixConfig) -> MatrixConfig:
    """The ``--quick`` variant of ``cfg``: quick data/train overrides, model kwargs merged into every preset."""
    q = cfg.quick
    models = {n: deep_merge(p, {"model": {"kwargs": q.model_kwargs}}) if q.model_kwargs else p
              for n, p in cfg.models.items()}
    exps = cfg.experiments
    if q.experiments is not None:
        unknown = [e for e in q.experiments if e not in {x.name for x in exps}]
        if unknown:
            raise ConfigError(f"quick.experiments lists unknown experiments {unknown}", key="quick.experiments")
        exps = tuple(e for e in exps if e.name in q.experiments)
    return dataclasses.replace(cfg, data=deep_merge(cfg.data, q.data), train=deep_merge(cfg.train, q.train),
                               models=models, experiments=exps, seeds=tuple(q.seeds or cfg.seeds))


def _canon(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def sha(obj: Any) -> str:
    """sha256 hex of the canonical JSON of ``obj``."""
    return hashlib.sha256(_canon(obj).encode("utf-8")).hexdigest()


def dataset_config(data: Mapping[str, Any]) -> SynthDatasetConfig:
    """:class:`SynthDatasetConfig` from the matrix's ``data`` mapping (strict keys)."""
    return from_mapping(SynthDatasetConfig, dict(data), where="data")


def data_hash(data: Mapping[str, Any]) -> str:
    """The *data config hash*: sha256 of the generator version and the full resolved :class:`SynthDatasetConfig`."""
    cfg = dataset_config(data)
    return sha({"generator_version": GENERATOR_VERSION, "config": config_mapping(cfg)})


def meta_hash(meta: Mapping[str, Any]) -> str:
    """The data hash recorded by a generated folder's ``meta.json``."""
    config = meta.get("config")
    if isinstance(config, Mapping):     # late fields at their default are not part of the hash (config_mapping)
        config = {k: v for k, v in config.items() if not (k in LATE_CONFIG_FIELDS and v == LATE_CONFIG_FIELDS[k])}
    return sha({"generator_version": meta.get("generator_version"), "config": config})


def git_revision(repo: Path | str | None = None) -> str:
    """``<commit>`` (``+dirty`` when the work tree has changes), or ``unknown`` outside a git checkout."""
    cwd = str(repo or Path(__file__).resolve().parents[2])
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def expand_protocols(patterns: Sequence[str], available: Sequence[str]) -> list[str]:
    """Protocol names matching ``patterns`` (exact names or shell patterns), in pattern then name order.

    Raises:
        ConfigError: a pattern matches no generated protocol.
    """
    out: list[str] = []
    for p in patterns:
        hits = sorted(a for a in available if fnmatch.fnmatchcase(a, p))
        if not hits:
            raise ConfigError(f"protocol {p!r} matches none of the generated protocols {sorted(available)}",
                              key="protocols", suggestions=suggest(p, available))
        out.extend(h for h in hits if h not in out)
    return out

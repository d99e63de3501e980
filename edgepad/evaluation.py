"""Scoring models on dev/eval protocols, bob-format score files, and dev-fitted ISO/IEC 30107-3 results.

Three layers, each usable alone:

* **Score files** (:class:`ScoreSet`, :func:`read_scores`, :func:`write_scores`): the bob score-CSV schema
  ``claimed_id,test_label,is_bonafide,attack_type,score`` plus a sidecar ``<file>.json`` with the metadata
  (model hash, precision, score scale, aggregation level, fill value, sub-protocol, criterion).
* **Results from scores** (:func:`evaluate_scores`): τ fitted on dev with a named criterion and applied unchanged
  to eval, the operating-point table (BPCER10/20/100), EER on dev, FTA; this is what ``edgepad metrics`` runs.
* **Scoring a model** (:func:`score_protocol`, :func:`evaluate_model`): reads the dev and eval folds of any loader
  kind (:func:`resolve_data`: a benchmark folder, or a YAML/JSON whose ``data`` section is the training one:
  ``kind: synthbench | wmca | casia_surf | cefa``), resizes each stored crop to the model's input size, normalises
  it with :func:`edgepad.data.transforms.normalise_sample` (the runtime's :func:`edgepad.preprocess.normalise` for
  metric depth, so scores match the runtime), runs any backend of the :mod:`edgepad.engines.backend` contract, and
  aggregates frames to videos (mean of valid frame scores). Formats and rules: docs/EVALUATION.md.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from edgepad.config import json_default
from edgepad.data.datasets import FrameDataset
from edgepad.data.sources import DataSourceConfig, build_dataset, data_config, read_data_config
from edgepad.data.transforms import normalise_sample, resize_to_inputs
from edgepad.engines.backend import load_backend
from edgepad.errors import ConfigError, DatasetError, MetricError
from edgepad.metrics import (DEFAULT_THRESHOLD_RULE, aggregate_by_key, bpcer_rate, clopper_pearson, eer_threshold,
                             pad_metrics, parse_criterion, place_threshold, split_scores, tpr_at_fpr)
from edgepad.preprocess import crop_face_depth_m, require_crop_align, require_crop_margin
from edgepad.report import write_report
from edgepad.types import parse_modalities

log = logging.getLogger(__name__)

SCORE_COLUMNS = ("claimed_id", "test_label", "is_bonafide", "attack_type", "score")
#: Operating points every result reports besides the main criterion.
DEFAULT_OPERATING_POINTS = ("bpcer10", "bpcer20", "bpcer100", "apcer100")
FRAME_SEPARATOR = "#"


# ================================================================================================ score files
@dataclass
class ScoreSet:
    """Scores of one fold, one row per sample (video or frame).

    Attributes:
        claimed_id: (N,) subject ids.
        test_label: (N,) unique sample keys (video path, or ``path#frame`` at frame level).
        is_bonafide: (N,) bool.
        attack_type: (N,) species name for attacks, ``""`` for bona fide.
        score: (N,) float64, higher = more bona fide, NaN = non-response.
        meta: sidecar metadata (score scale, aggregation level, model hash …).
    """

    claimed_id: list[str]
    test_label: list[str]
    is_bonafide: np.ndarray
    attack_type: list[str]
    score: np.ndarray
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.is_bonafide = np.asarray(self.is_bonafide, dtype=bool).reshape(-1)
        self.score = np.asarray(self.score, dtype=np.float64).reshape(-1)
        self.claimed_id = [str(c) for c in self.claimed_id]
        self.test_label = [str(t) for t in self.test_label]
        self.attack_type = ["" if b else str(a) for a, b in zip(self.attack_type, self.is_bonafide)]
        n = self.score.size
        if not (len(self.claimed_id) == len(self.test_label) == len(self.attack_type) == self.is_bonafide.size == n):
            raise DatasetError("score set columns have different lengths")

    def __len__(self) -> int:
        return int(self.score.size)

    @property
    def args(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """``(scores, is_bonafide, species)`` for :mod:`edgepad.metrics` functions."""
        return self.score, self.is_bonafide, self.attack_type

    @property
    def species(self) -> list[str]:
        """Sorted attack species present."""
        return sorted({a for a, b in zip(self.attack_type, self.is_bonafide) if not b})

    def select(self, mask: np.ndarray) -> "ScoreSet":
        """Rows where ``mask`` is True."""
        idx = np.flatnonzero(np.asarray(mask, dtype=bool))
        return ScoreSet([self.claimed_id[i] for i in idx], [self.test_label[i] for i in idx],
                        self.is_bonafide[idx], [self.attack_type[i] for i in idx], self.score[idx], dict(self.meta))


def sidecar_path(path: Path | str) -> Path:
    """``scores-dev.csv`` -> ``scores-dev.csv.json``."""
    p = Path(path)
    return p.with_name(p.name + ".json")


def _parse_bool(value: str, where: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "1"):
        return True
    if v in ("false", "0"):
        return False
    raise DatasetError(f"{where}: is_bonafide must be True or False (case-insensitive), got {value!r}")


def read_scores(path: Path | str, *, attack_type_default: str = "attack") -> ScoreSet:
    """Read a bob-format score CSV (header required; extra columns ignored) and its sidecar JSON if present.

    Args:
        path: CSV with at least ``is_bonafide`` and ``score`` (``claimed_id``, ``test_label``, ``attack_type``
            optional). ``score`` may be ``nan``/``NaN``/empty for a non-response.
        attack_type_default: species given to attacks whose ``attack_type`` is empty (logged).

    Raises:
        DatasetError: missing file, missing columns, bad booleans or scores, duplicate ``test_label``.
    """
    path = Path(path)
    try:
        fh = open(path, newline="", encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"cannot read score file {path}: {exc}") from exc
    try:
        with fh:
            return _read_score_rows(path, fh, attack_type_default)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"cannot read score file {path}: {exc}") from exc


def _read_score_rows(path: Path, fh: Any, attack_type_default: str) -> ScoreSet:
    reader = csv.DictReader(fh)
    cols = [c.strip() for c in (reader.fieldnames or [])]
    reader.fieldnames = cols
    for c in ("is_bonafide", "score"):
        if c not in cols:
            raise DatasetError(f"{path}: no {c!r} column; a bob score CSV has the header "
                               f"{','.join(SCORE_COLUMNS)}")
    cid, lab, bf, att, sc = [], [], [], [], []
    unnamed = 0
    for i, row in enumerate(reader, start=2):
        where = f"{path}:{i}"
        b = _parse_bool(row.get("is_bonafide") or "", where)
        raw = (row.get("score") or "").strip()
        try:
            s = float(raw) if raw else math.nan
        except ValueError:
            raise DatasetError(f"{where}: score {raw!r} is not a number (use nan for a non-response)") from None
        a = (row.get("attack_type") or "").strip()
        if not b and not a:
            a = attack_type_default
            unnamed += 1
        cid.append((row.get("claimed_id") or "").strip())
        lab.append((row.get("test_label") or f"row{i - 1}").strip())
        bf.append(b)
        att.append(a)
        sc.append(s)
    if not sc:
        raise DatasetError(f"{path}: no score rows")
    if unnamed:
        log.warning("%s: %d attack rows without attack_type were grouped as species %r", path, unnamed,
                    attack_type_default)
    if len(set(lab)) != len(lab):
        dup = next(x for x in lab if lab.count(x) > 1)
        raise DatasetError(f"{path}: test_label {dup!r} occurs more than once; labels must be unique")
    meta: dict = {}
    sp = sidecar_path(path)
    if sp.exists():
        try:
            meta = json.loads(sp.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DatasetError(f"cannot parse score metadata {sp}: {exc}") from exc
    return ScoreSet(cid, lab, np.array(bf, dtype=bool), att, np.array(sc, dtype=np.float64), meta)


def write_scores(path: Path | str, scores: ScoreSet, meta: Mapping[str, Any] | None = None) -> Path:
    """Write ``scores`` as a bob-format CSV (``True``/``False``, ``nan``, ``repr`` floats) plus ``<path>.json``.

    Returns:
        The CSV path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(SCORE_COLUMNS)
        for c, t, b, a, s in zip(scores.claimed_id, scores.test_label, scores.is_bonafide, scores.attack_type,
                                 scores.score):
            w.writerow([c, t, "True" if b else "False", "" if b else a, "nan" if math.isnan(s) else repr(float(s))])
    info = dict(scores.meta)
    info.update(meta or {})
    info.setdefault("columns", list(SCORE_COLUMNS))
    info["n_rows"] = len(scores)
    sidecar_path(path).write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def aggregate_videos(frames: ScoreSet) -> ScoreSet:
    """Frame-level scores (``test_label = video#frame``) -> video-level: mean of valid frame scores per video.

    A video with no valid frame gets NaN (failure to acquire).

    Raises:
        DatasetError: frames of one video disagree on label, species or subject.
    """
    keys = [t.split(FRAME_SEPARATOR, 1)[0] for t in frames.test_label]
    first: dict[str, int] = {}
    for i, k in enumerate(keys):
        j = first.setdefault(k, i)
        if (frames.is_bonafide[i] != frames.is_bonafide[j] or frames.attack_type[i] != frames.attack_type[j]
                or frames.claimed_id[i] != frames.claimed_id[j]):
            raise DatasetError(f"frames of video {k!r} disagree on label, species or subject")
    vids, vscores = aggregate_by_key(keys, frames.score)
    idx = [first[v] for v in vids]
    meta = dict(frames.meta)
    meta["level"] = "video"
    meta["aggregation"] = "mean of valid frame scores; no valid frame = NaN (FTA)"
    return ScoreSet([frames.claimed_id[i] for i in idx], vids, frames.is_bonafide[idx],
                    [frames.attack_type[i] for i in idx], vscores, meta)


# ================================================================================================ results
def evaluate_scores(dev: ScoreSet, eval_: ScoreSet, criterion: str = "bpcer20", *,
                    operating_points: Sequence[str] = DEFAULT_OPERATING_POINTS, alpha: float = 0.05,
                    pais: Iterable[str] | None = None, extra_thresholds: Mapping[str, float] | None = None,
                    rule: str = DEFAULT_THRESHOLD_RULE) -> dict:
    """ISO/IEC 30107-3 results: τ fitted on dev with ``criterion``, placed by ``rule``, applied unchanged to eval.

    Args:
        dev, eval_: score sets of the two folds (same score scale and aggregation level).
        criterion: the headline criterion (``bpcerN``, ``apcerN``, ``eer``, ``min-hter``).
        rule: τ placement (:func:`edgepad.metrics.place_threshold`; default the rule the export records in the
            manifest, ``gap_logit``, which needs scores in [0, 1]; ``edge`` = the criterion's τ as is); every
            operating point is placed by it too.
        operating_points: further criteria reported in the operating-point table (each τ from dev).
        alpha: 1 - confidence level of the Clopper–Pearson intervals.
        pais: species expected in eval (an absent one raises).
        extra_thresholds: named fixed thresholds (e.g. ``{"manifest": 0.42}``) reported as well.

    Returns:
        JSON-ready dict with ``criterion``, ``threshold``, ``threshold_rule`` (the rule name),
        ``threshold_placement`` (:meth:`~edgepad.metrics.ThresholdFit.to_dict`), ``dev`` and ``eval``
        (:func:`pad_metrics` dicts),
        ``operating_points`` {name: {threshold, eval (apcer/bpcer/acer + k/n), dev_apcer, dev_bpcer}},
        ``eer_dev``, ``eer_eval``, ``hter_eval_at_eer_dev``, ``tpr_at_fpr_eval`` (legacy), ``species``, counts.

    Raises:
        MetricError: empty classes or species, too few dev scores to fit; ``gap_logit`` with scores outside [0, 1].
        ConfigError: unknown rule or criterion.
    """
    crit = parse_criterion(criterion)
    fit = place_threshold(*dev.args, crit, rule)
    tau = fit.threshold
    res: dict[str, Any] = {
        "criterion": crit.name,
        "threshold": tau,
        "threshold_rule": rule,
        "threshold_placement": fit.to_dict(),
        "threshold_note": f"τ from dev ({crit.name}, placed by rule {rule}), applied unchanged to eval",
        "decision": "bona fide iff score >= τ",
        "species": {"dev": dev.species, "eval": eval_.species},
        "dev": pad_metrics(*dev.args, tau, alpha=alpha),
        "eval": pad_metrics(*eval_.args, tau, pais=pais, alpha=alpha),
    }
    ops: dict[str, Any] = {}
    names = list(dict.fromkeys([crit.name, *[parse_criterion(c).name for c in operating_points]]))
    for name in names:
        try:
            t = tau if name == crit.name else place_threshold(*dev.args, name, rule).threshold
        except MetricError as exc:
            ops[name] = {"error": str(exc)}
            continue
        ops[name] = _op_row(dev, eval_, t, alpha)
    for name, t in (extra_thresholds or {}).items():
        ops[name] = _op_row(dev, eval_, float(t), alpha)
    res["operating_points"] = ops
    d_split = split_scores(*dev.args)
    e_split = split_scores(*eval_.args)
    eer_d, tau_eer = eer_threshold(d_split.bonafide, d_split.pooled_attacks)
    eer_e, tau_eer_e = eer_threshold(e_split.bonafide, e_split.pooled_attacks)
    res["eer_dev"] = {"eer": eer_d, "threshold": tau_eer}
    res["eer_eval"] = {"eer": eer_e, "threshold": tau_eer_e, "note": "informational: τ from eval itself"}
    res["hter_eval_at_eer_dev"] = pad_metrics(*eval_.args, tau_eer, alpha=alpha)["hter"]
    res["tpr_at_fpr_eval"] = {f"{x:g}": tpr_at_fpr(eval_.score, eval_.is_bonafide, x)[0] for x in (0.01, 0.001)
                              if e_split.pooled_attacks.size}
    res["counts"] = {fold: _counts(s) for fold, s in (("dev", dev), ("eval", eval_))}
    res["level"] = eval_.meta.get("level", dev.meta.get("level", "unspecified"))
    return res


def _op_row(dev: ScoreSet, eval_: ScoreSet, tau: float, alpha: float) -> dict:
    d = pad_metrics(*dev.args, tau, alpha=alpha)
    e = pad_metrics(*eval_.args, tau, alpha=alpha)
    return {"threshold": tau, "dev_apcer": d["apcer"], "dev_bpcer": d["bpcer"],
            "eval": {"apcer": e["apcer"], "bpcer": e["bpcer"], "acer": e["acer"], "hter": e["hter"],
                     "apcer_worst_species": e["apcer_worst_species"], "bpcer_rate": e["rates"]["bpcer"]}}


def _counts(s: ScoreSet) -> dict:
    out = {"bonafide": int(s.is_bonafide.sum())}
    for p in s.species:
        out[p] = sum(1 for a, b in zip(s.attack_type, s.is_bonafide) if not b and a == p)
    out["nan"] = int(np.isnan(s.score).sum())
    return out


# ================================================================================================ scoring
def resolve_data(data: Path | str | DataSourceConfig | Mapping, protocol: str | None = None) -> DataSourceConfig:
    """The data source of ``edgepad evaluate --data``.

    Args:
        data: a benchmark folder (``protocols/``, ``videos/``: kind ``synthbench``), a ``.yaml``/``.yml``/``.json``
            file (a training config or its ``data`` section alone), a mapping of the same, or a config.
        protocol: overrides the config's ``protocol`` (None = keep it; ``grandtest`` for a folder).

    Raises:
        ConfigError: neither a folder nor a config file, or a bad config.
    """
    if isinstance(data, DataSourceConfig):
        cfg = data
    elif isinstance(data, Mapping):
        cfg = data_config(data)
    else:
        path = Path(data)
        if path.is_dir():
            cfg = DataSourceConfig(kind="synthbench", root=path)
        elif path.is_file() and path.suffix.lower() in (".yaml", ".yml", ".json"):
            cfg = read_data_config(path)
        else:
            raise ConfigError(f"--data {path}: expected a benchmark folder or a YAML/JSON data config (kind: "
                              f"synthbench | wmca | casia_surf | cefa; see docs/EVALUATION.md)", key="data")
    if protocol is not None and protocol != cfg.protocol:
        cfg = replace(cfg, protocol=protocol)
    return cfg


def protocol_name(cfg: DataSourceConfig) -> str:
    """Name of what is scored: the protocol (benchmark, WMCA) or ``<kind>:<eval list stem>`` (list kinds)."""
    if cfg.kind in ("casia_surf", "cefa"):
        return f"{cfg.kind}:{Path(cfg.eval_list).stem if cfg.eval_list else cfg.eval_split}"
    return cfg.protocol


def fold_dataset(data: Path | str | DataSourceConfig | Mapping, fold: str, max_frames: int | None = None,
                 protocol: str | None = None) -> FrameDataset:
    """The loader of ``fold`` (``dev`` / ``eval`` name the config's ``dev_split`` / ``eval_split``)."""
    cfg = resolve_data(data, protocol)
    split = {"dev": cfg.dev_split, "eval": cfg.eval_split, "train": cfg.train_split}.get(fold, fold)
    return build_dataset(cfg, split, max_frames)


def iter_protocol_fold(root: Path | str | DataSourceConfig | Mapping, protocol: str | None, fold: str,
                       max_frames: int | None = None, limit: int | None = None,
                       inputs: Mapping | None = None) -> Iterator[Any]:
    """Samples (:class:`edgepad.data.datasets.Sample`) of one fold of any loader kind (:func:`resolve_data`).

    ``limit`` keeps the first N videos (smoke runs). ``inputs``: the model's input specs; the fold's crop margin
    (``FrameDataset.crop_margin``) must be theirs (ConfigError ``key="margin"`` before the first sample).
    """
    ds = fold_dataset(root, fold, max_frames, protocol)
    if inputs is not None:
        require_crop_margin(inputs, ds.crop_margin, f"evaluation data ({fold})")
    seen: dict[str, None] = {}
    for i in range(len(ds)):
        ref = ds.records[i]
        if limit and ref.video_id not in seen and len(seen) >= limit:
            continue
        seen.setdefault(ref.video_id, None)
        yield ds[i]


def score_protocol(backend, root: Path | str, protocol: str, *, folds: Sequence[str] = ("dev", "eval"),
                   subset: Iterable[str] | None = None, max_frames: int | None = None, batch_size: int = 32,
                   limit: int | None = None, heads: Sequence[str] = ()) -> dict[str, ScoreSet]:
    """Frame-level scores of ``backend`` on the videos of ``protocol``'s folds.

    Each stored crop is resized to its input's S×S (bilinear; depth nearest-neighbour) and goes through
    :func:`edgepad.data.transforms.normalise_sample` with the manifest's input specs (for metric depth exactly
    the runtime's ``normalise``); modalities outside ``subset`` are left out, so the manifest's ``missing_fill`` is
    written for them (the missing-modality sub-protocols P1–P3).

    Args:
        backend: a backend of the :mod:`edgepad.engines.backend` contract (activated here if it is not active).
        root: a benchmark folder, a data config file / mapping, or a :class:`DataSourceConfig` (:func:`resolve_data`).
        protocol: protocol name (``grandtest``, ``LOO_replay`` …); None = the config's.
        folds: folds to score.
        subset: modalities presented to the model (e.g. ``("rgb", "depth")``); None = the model's own.
        max_frames: frames per video (evenly sampled); None = all.
        batch_size: frames per ``infer`` call when every input has a dynamic batch axis (else 1).
        limit: score at most this many videos per fold (smoke runs).
        heads: further outputs to collect per frame (per-modality heads, :func:`head_outputs`).

    Returns:
        ``{fold: ScoreSet}`` at frame level (``test_label = video#frame``); ``meta["groups"]`` maps each label to
        the sample's group (skin tone / ethnicity) when the dataset knows it; ``meta["head_scores"]`` maps each
        name in ``heads`` to its (N,) frame scores.
    """
    cfg = resolve_data(root, protocol)
    protocol = protocol_name(cfg)
    model_mods = [m.value for m in backend.manifest.modalities]
    mods = model_mods if subset is None else [m.value for m in parse_modalities(list(subset))]
    unknown = [m for m in mods if m not in model_mods]
    if unknown:
        raise DatasetError(f"subset {mods} has modalities {unknown} the model was not trained with ({model_mods})")
    inputs = backend.manifest.inputs
    require_crop_align(inputs, "none", "evaluation data")  # stored crops: axis-aligned, no landmarks
    dynamic = all(spec.shape[0] == -1 for spec in backend.inputs.values())
    bs = max(1, batch_size) if dynamic else 1
    out_name = backend.manifest.score_output
    heads = list(heads)
    missing = [h for h in heads if h not in backend.manifest.outputs]
    if missing:
        raise DatasetError(f"head outputs {missing} are not among the model's outputs {list(backend.manifest.outputs)}")
    was_active = getattr(backend, "is_active", False)
    if not was_active:
        backend.activate()
    result: dict[str, ScoreSet] = {}
    try:
        for fold in folds:
            labels, cids, bfs, atts, scores, groups, encodings = [], [], [], [], [], {}, set()
            head_scores: dict[str, list[float]] = {h: [] for h in heads}
            pending: list[dict] = []

            def flush() -> None:
                if not pending:
                    return
                feed = {k: np.concatenate([p[k] for p in pending], axis=0) for k in pending[0]}
                res = backend.infer(feed)
                for name, acc in ((out_name, scores), *head_scores.items()):
                    out = np.asarray(res[name], dtype=np.float64).reshape(-1)
                    if out.size != len(pending):
                        raise DatasetError(f"backend returned {out.size} {name!r} values for a batch of "
                                           f"{len(pending)}")
                    acc.extend(out.tolist())
                pending.clear()

            t0 = time.perf_counter()
            for smp in iter_protocol_fold(cfg, None, fold, max_frames, limit, inputs=inputs):
                if "depth" in smp.modalities:
                    encodings.add(smp.depth_encoding)
                present = resize_to_inputs({m: smp.modalities[m] for m in mods if m in smp.modalities}, inputs)
                z = smp.face_depth_m
                if (z is None and "depth" not in present and "depth" in smp.modalities
                        and smp.depth_encoding == "mm16"):
                    # depth not presented: the runtime still knows the face distance (measured or box size)
                    z = crop_face_depth_m(smp.modalities["depth"], smp.depth_scale_m)
                pending.append(normalise_sample(present, inputs, smp.depth_scale_m, face_depth_m=z,
                                                depth_encoding=smp.depth_encoding))
                label = f"{smp.video_id}{FRAME_SEPARATOR}{smp.frame_idx}"
                labels.append(label)
                cids.append(smp.subject if smp.subject is not None else smp.video_id.split("_", 1)[0])
                bfs.append(bool(smp.is_bonafide))
                atts.append("" if smp.is_bonafide else smp.pai)
                if smp.group is not None:
                    groups[label] = str(smp.group)
                if len(pending) >= bs:
                    flush()
            flush()
            if not labels:
                raise DatasetError(f"protocol {protocol!r} has no {fold!r} samples under {root}")
            log.info("scored %s/%s: %d frames in %.1f s", protocol, fold, len(scores), time.perf_counter() - t0)
            meta = {"level": "frame", "protocol": protocol, "fold": fold, "modalities": mods,
                    "max_frames_per_video": max_frames, "data_kind": cfg.kind,
                    "depth_encoding": "+".join(sorted(encodings)) or None}
            if groups:
                meta["groups"] = groups
            if heads:
                meta["head_scores"] = {h: np.array(v, dtype=np.float64) for h, v in head_scores.items()}
            result[fold] = ScoreSet(cids, labels, np.array(bfs, dtype=bool), atts, np.array(scores), meta)
    finally:
        if not was_active:
            backend.deactivate()
    return result


def bpcer_per_group(scores: ScoreSet, groups: Mapping[str, str], threshold: float, alpha: float = 0.05) -> dict:
    """Fairness: BPCER per group (skin tone / ethnicity) at ``threshold``; keys of ``groups`` are test labels
    (frame labels ``video#i`` also match their video)."""
    by_group: dict[str, list[float]] = {}
    vid_groups = {k.split(FRAME_SEPARATOR, 1)[0]: g for k, g in groups.items()}
    for lab, b, s in zip(scores.test_label, scores.is_bonafide, scores.score):
        g = groups.get(lab, vid_groups.get(lab.split(FRAME_SEPARATOR, 1)[0]))
        if b and g is not None and not math.isnan(s):
            by_group.setdefault(g, []).append(s)
    out = {}
    for g in sorted(by_group):
        k, n = bpcer_rate(np.array(by_group[g]), threshold)
        lo, hi = clopper_pearson(k, n, alpha)
        out[g] = {"k": k, "n": n, "value": k / n, "ci": [lo, hi]}
    return out


def score_metadata(backend, subset: Sequence[str], criterion: str) -> dict:
    """Sidecar metadata of a score file produced by ``backend``."""
    man = backend.manifest
    present = set(subset)
    fills = {name: spec.missing_fill for name, spec in man.inputs.items() if name not in present}
    return {"model": man.model, "artifact": str(getattr(backend, "artifact", "")),
            "artifact_sha256": man.artifact_sha256, "onnx_sha256": man.onnx_sha256, "format": man.format,
            "precision": man.precision, "backend": getattr(backend, "kind", "?"),
            "score_scale": f"{man.score_output}: P(bona fide) in [0, 1], higher = bona fide",
            "modalities_presented": list(subset), "missing_fill": fills,
            "sub_protocol": "+".join(subset), "threshold_criterion": criterion,
            "manifest_threshold": man.threshold, "manifest_threshold_criterion": man.threshold_criterion,
            "manifest_threshold_rule": (man.training or {}).get("threshold_rule")}


# ================================================================================================ per-head
HEAD_PREFIX = "score_"


def head_outputs(manifest) -> list[str]:
    """The manifest's per-modality head outputs (``score_<m>``), in manifest order."""
    return [n for n in manifest.outputs if n.startswith(HEAD_PREFIX) and n != manifest.score_output]


def with_scores(base: ScoreSet, scores: np.ndarray) -> ScoreSet:
    """``base`` with its score column replaced (same rows; e.g. one head's scores)."""
    return ScoreSet(base.claimed_id, base.test_label, base.is_bonafide, base.attack_type, scores, dict(base.meta))


def _stats(x: np.ndarray) -> dict:
    if not x.size:
        return {"n": 0, "mean": math.nan, "median": math.nan, "p5": math.nan, "p95": math.nan}
    p5, med, p95 = np.percentile(x, [5, 50, 95])
    return {"n": int(x.size), "mean": float(x.mean()), "median": float(med), "p5": float(p5), "p95": float(p95)}


def score_distributions(scores: ScoreSet) -> dict:
    """Valid-score statistics (n, mean, median, p5, p95) for ``bonafide`` and each PAI species."""
    sp = split_scores(*scores.args)
    return {"bonafide": _stats(sp.bonafide), **{p: _stats(a) for p, a in sp.attacks.items()}}


def _margin(dist: Mapping[str, Mapping[str, float]]) -> float:
    """Bona fide p5 minus the highest attack-species p95 (> 0: the classes' bulks do not overlap)."""
    att = [d["p95"] for c, d in dist.items() if c != "bonafide" and d["n"]]
    return dist["bonafide"]["p5"] - max(att) if att and dist["bonafide"]["n"] else math.nan


def _head_row(dev: ScoreSet, eval_: ScoreSet, alpha: float) -> dict:
    ds = split_scores(*dev.args)
    if not ds.bonafide.size or not ds.pooled_attacks.size:
        raise MetricError("per-head diagnostics need valid bona fide and attack scores on dev")
    eer, tau = eer_threshold(ds.bonafide, ds.pooled_attacks)
    m = pad_metrics(*eval_.args, tau, alpha=alpha)
    dist = {"dev": score_distributions(dev), "eval": score_distributions(eval_)}
    return {"eer_dev": eer, "threshold_eer_dev": tau,
            "eval_at_eer_dev": {"apcer": m["apcer"], "bpcer": m["bpcer"], "acer": m["acer"],
                                "apcer_worst_species": m["apcer_worst_species"],
                                "apcer_per_species": {p: r["value"] for p, r in m["apcer_per_species"].items()}},
            "margin_eval": _margin(dist["eval"]), "distribution": dist}


def head_diagnostics(dev: Mapping[str, ScoreSet], eval_: Mapping[str, ScoreSet],
                     fused: tuple[ScoreSet, ScoreSet] | None = None, alpha: float = 0.05) -> dict:
    """Per-head diagnostics: score distributions per species, EER on dev, eval APCER/BPCER/ACER at the head's own
    dev-EER τ.

    Args:
        dev, eval_: head name -> its scores on each fold (same rows as the fused scores).
        fused: the fused ``score`` (dev, eval), reported alongside for reference.

    Returns:
        ``{"heads": {name: row}, "fused": row | None, "weakest_head": name, "rule": ...}``; the weakest head has the
        highest eval ACER, then the higher dev EER, then the smaller eval margin (bona fide p5 − highest species p95).

    Raises:
        MetricError: no heads, a head missing from one fold, or a fold without valid bona fide/attack scores.
    """
    if not dev:
        raise MetricError("no head outputs to diagnose")
    if set(dev) != set(eval_):
        raise MetricError(f"heads differ between dev {sorted(dev)} and eval {sorted(eval_)}")
    rows = {h: _head_row(dev[h], eval_[h], alpha) for h in dev}

    def weakness(h: str) -> tuple:
        r = rows[h]
        margin = r["margin_eval"]
        return (r["eval_at_eer_dev"]["acer"], r["eer_dev"], -margin if not math.isnan(margin) else math.inf)

    weakest = max(rows, key=weakness)
    return {"heads": rows, "fused": _head_row(*fused, alpha) if fused else None, "weakest_head": weakest,
            "rule": "τ per head = its own EER threshold on dev (pooled attacks), applied unchanged to eval; weakest "
                    "= highest eval ACER, then higher dev EER, then smaller eval margin (bona fide p5 − highest "
                    "attack-species p95)"}


def render_heads_markdown(diag: Mapping[str, Any], fused_name: str = "score") -> str:
    """Markdown of :func:`head_diagnostics`: one error-rate row per output, then eval distributions per class."""
    def f(x: float) -> str:
        return "n/a" if math.isnan(x) else f"{x:.3f}"

    def pc(x: float) -> str:
        return "n/a" if math.isnan(x) else f"{100 * x:.2f} %"

    rows = ([(f"{fused_name} (fused)", diag["fused"])] if diag.get("fused") else []) + list(diag["heads"].items())
    out = ["| output | dev EER | τ (dev EER) | eval APCER | eval BPCER | eval ACER | bona fide median (eval) | "
           "highest attack median (eval) | margin (eval) |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows:
        e = r["eval_at_eer_dev"]
        dist = r["distribution"]["eval"]
        att = {c: d for c, d in dist.items() if c != "bonafide" and d["n"]}
        top = max(att, key=lambda c: att[c]["median"]) if att else None
        top_txt = "—" if top is None else f"{f(att[top]['median'])} ({top})"
        out.append(f"| {name} | {pc(r['eer_dev'])} | {r['threshold_eer_dev']:.4g} | {pc(e['apcer'])} | "
                   f"{pc(e['bpcer'])} | {pc(e['acer'])} | {f(dist['bonafide']['median'])} | "
                   f"{top_txt} | "
                   f"{f(r['margin_eval'])} |")
    w = diag["weakest_head"]
    out += ["", f"Weakest head: **{w}** (eval ACER {pc(diag['heads'][w]['eval_at_eer_dev']['acer'])} at its own "
                f"dev-EER τ, margin {f(diag['heads'][w]['margin_eval'])}). Rule: {diag['rule']}.", "",
            "Score distributions per class (eval; n, mean, median, p5, p95 of valid scores):", "",
            "| output | class | n | mean | median | p5 | p95 |", "|---|---|---|---|---|---|---|"]
    for name, r in rows:
        for c, d in r["distribution"]["eval"].items():
            out.append(f"| {name} | {c} | {d['n']} | {f(d['mean'])} | {f(d['median'])} | {f(d['p5'])} | "
                       f"{f(d['p95'])} |")
    return "\n".join(out) + "\n"


def write_head_diagnostics(out: Path, dev: Mapping[str, ScoreSet], eval_: Mapping[str, ScoreSet],
                           fused: tuple[ScoreSet, ScoreSet] | None, *, plots: bool = True,
                           context: Mapping[str, Any] | None = None) -> dict:
    """Write ``heads.json``, ``heads.md`` and (with matplotlib, ``plots``) ``heads.png``; returns the diagnostics."""
    from edgepad.report import write_heads_plot
    diag = head_diagnostics(dev, eval_, fused)
    if context:
        diag["context"] = dict(context)
    (out / "heads.json").write_text(json.dumps(diag, indent=2, default=json_default) + "\n", encoding="utf-8")
    (out / "heads.md").write_text("# Per-head diagnostics\n\n" + render_heads_markdown(diag), encoding="utf-8")
    if plots:
        png = write_heads_plot(out / "heads.png", eval_, diag)
        diag["plot"] = png.name if png else None
    return diag


def evaluate_model(model: Path | str, data: Path | str | DataSourceConfig | Mapping, protocol: str | None,
                   out: Path | str, *,
                   criterion: str = "bpcer20", subset: Iterable[str] | None = None, max_frames: int | None = None,
                   backend_kind: str = "auto", batch_size: int = 32, level: str = "video", plots: bool = True,
                   limit: int | None = None, backend=None, threshold_rule: str = DEFAULT_THRESHOLD_RULE) -> dict:
    """Score ``model`` on ``protocol``'s dev and eval folds, fit τ on dev, write CSVs, metrics JSON and report.

    Writes into ``out``: ``scores-dev.csv``/``scores-eval.csv`` (+ sidecars; level ``level``),
    ``frames/scores-{dev,eval}.csv`` (frame level), ``metrics.json`` (both levels) and ``report.md``/``.html``;
    with per-modality head outputs (``score_<m>``) also ``heads.json``/``heads.md``/``heads.png``
    (:func:`write_head_diagnostics`; the weakest head is named in the report and ``metrics.json["heads"]``).

    Args:
        model: ``.onnx``/``.pt``/``.engine`` with its manifest (loaded through ``load_backend``).
        data: benchmark folder or data config (:func:`resolve_data`); protocol: protocol name (None = the
            config's, ``grandtest`` for a folder); out: output folder.
        criterion: threshold criterion on dev. subset: modalities presented (missing-modality sub-protocol).
        max_frames: frames per video. backend_kind: ``auto|onnxruntime|torch|trt``. level: ``video|frame``
            (which level the headline files and report use). backend: an already-open backend (tests, bench).
        threshold_rule: τ placement on dev (:func:`evaluate_scores`; default = the export's rule). The result
            records it, and ``model.manifest_threshold_rule`` the rule the manifest's τ was placed with (``None``:
            a manifest exported before rules were recorded, i.e. ``edge``).

    Returns:
        The metrics dict that was written to ``metrics.json``.
    """
    if level not in ("video", "frame"):
        raise MetricError(f"level must be 'video' or 'frame', got {level!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if backend is None:
        backend = load_backend(model, backend_kind)
    mods = [m.value for m in backend.manifest.modalities] if subset is None else None
    if subset is not None:
        mods = [m.value for m in parse_modalities(list(subset))]
    cfg = resolve_data(data, protocol)
    protocol = protocol_name(cfg)
    heads = head_outputs(backend.manifest)
    frames = score_protocol(backend, cfg, None, subset=mods, max_frames=max_frames, batch_size=batch_size,
                            limit=limit, heads=heads)
    groups = frames["eval"].meta.pop("groups", None)
    frames["dev"].meta.pop("groups", None)
    head_frames = {fold: fs.meta.pop("head_scores", {}) for fold, fs in frames.items()}
    meta = score_metadata(backend, mods, parse_criterion(criterion).name)
    meta.update({"threshold_rule": threshold_rule,"protocol": protocol, "data": str(data), "data_kind": cfg.kind,
                 "depth_encoding": frames["eval"].meta.get("depth_encoding")})
    levels: dict[str, dict[str, ScoreSet]] = {"frame": {}, "video": {}}
    for fold, fs in frames.items():
        fs.meta.update(meta)
        levels["frame"][fold] = fs
        levels["video"][fold] = aggregate_videos(fs)
        write_scores(out / "frames" / f"scores-{fold}.csv", fs)
        write_scores(out / f"scores-{fold}.csv", levels[level][fold] if level == "video" else fs)
    results = {lv: evaluate_scores(levels[lv]["dev"], levels[lv]["eval"], criterion, rule=threshold_rule,
                                   extra_thresholds={"manifest": backend.manifest.threshold}) for lv in levels}
    if groups:
        for lv, r in results.items():
            r["bpcer_per_group"] = bpcer_per_group(levels[lv]["eval"], groups, r["threshold"])
    doc = {"protocol": protocol, "sub_protocol": "+".join(mods), "level": level, "model": meta,
           "result": results[level], "other_level": {k: v for k, v in results.items() if k != level}}
    context = {"model": str(model), "data": str(data), "level": level, "frames_per_video": max_frames or "all"}
    if heads:
        by_fold = {}
        for fold, fs in frames.items():
            per = {h: with_scores(fs, head_frames[fold][h]) for h in heads}
            by_fold[fold] = per if level == "frame" else {h: aggregate_videos(s) for h, s in per.items()}
        try:
            diag = write_head_diagnostics(out, by_fold["dev"], by_fold["eval"],
                                          (levels[level]["dev"], levels[level]["eval"]), plots=plots,
                                          context={**context, "protocol": protocol, "sub_protocol": "+".join(mods)})
        except MetricError as exc:  # diagnostics only: never fail the evaluation itself
            log.warning("per-head diagnostics skipped: %s", exc)
            doc["heads"] = {"error": str(exc)}
            context["per-head diagnostics"] = f"skipped: {exc}"
        else:
            w = diag["weakest_head"]
            rows = diag["heads"]
            doc["heads"] = {"file": "heads.json", "weakest_head": w,
                            "eer_dev": {h: r["eer_dev"] for h, r in rows.items()},
                            "eval_acer_at_eer_dev": {h: r["eval_at_eer_dev"]["acer"] for h, r in rows.items()}}
            context["weakest head"] = (f"{w} (eval ACER {100 * rows[w]['eval_at_eer_dev']['acer']:.2f} % at its own "
                                       f"dev-EER τ; all heads: heads.md)")
    (out / "metrics.json").write_text(json.dumps(doc, indent=2, default=json_default) + "\n", encoding="utf-8")
    write_report(out, results[level], levels[level]["dev"], levels[level]["eval"],
                 title=f"{protocol} ({'+'.join(mods)}) — {Path(str(model)).name}", plots=plots,
                 context=context)
    return doc


def evaluate_files(dev_csv: Path | str, eval_csv: Path | str, out: Path | str | None, *,
                   criterion: str = "bpcer20", plots: bool = True, title: str | None = None,
                   threshold_rule: str = DEFAULT_THRESHOLD_RULE) -> dict:
    """``edgepad metrics``: results and report from two bob-format score CSVs alone (τ placed by
    ``threshold_rule``, :func:`evaluate_scores`; scores outside [0, 1] need ``gap`` or ``edge``).

    Writes ``metrics.json`` and ``report.md``/``.html`` (+ PNG plots) into ``out`` when given.
    """
    dev = read_scores(dev_csv)
    ev = read_scores(eval_csv)
    for name, s in (("dev", dev), ("eval", ev)):
        if s.meta.get("level") and dev.meta.get("level") and s.meta["level"] != dev.meta["level"]:
            raise MetricError(f"dev and eval score files are at different levels ({dev.meta['level']} vs "
                              f"{s.meta['level']}); thresholds and metrics need the same level")
    res = evaluate_scores(dev, ev, criterion, rule=threshold_rule)
    res["files"] = {"dev": str(dev_csv), "eval": str(eval_csv)}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(res, indent=2, default=json_default) + "\n", encoding="utf-8")
        write_report(out, res, dev, ev, title=title or f"{Path(eval_csv).name} (τ from {Path(dev_csv).name})",
                     plots=plots, context={"dev scores": str(dev_csv), "eval scores": str(eval_csv)})
    return res

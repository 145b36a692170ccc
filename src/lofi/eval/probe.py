"""A linear probe of snippet features: do they tell background, an action's boundary phase and its middle apart?

The probe measures the task discrepancy at the feature level, before any head is trained. Each snippet of each
video gets one of three phases from the ground truth, by the time at its centre:

- ``background``: outside every instance;
- ``boundary``: inside an instance, in its onset or offset phase;
- ``middle``: inside an instance, between onset and offset.

Where the phases are known (lofi's synthetic data records them in ``synthetic.json``, :func:`synthetic_phases`),
onset and offset are exact; otherwise the boundary phase is the first and last ``boundary_frac`` of each
instance (at least half a snippet). A multinomial logistic regression, standardised inputs, classes weighted
inversely to their frequency, is fitted on the training subset's snippets and scored on the evaluation subset's:
``boundary_accuracy`` is the recall of the boundary phase, ``balanced_accuracy`` the mean recall of the three.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F

from lofi.data.annotations import AnnotationSet, VideoAnnotation
from lofi.data.features import find_feature_file, read_features
from lofi.data.synthetic.generate import METADATA_FILE

PHASES: tuple[str, ...] = ("background", "boundary", "middle")
BACKGROUND, BOUNDARY, MIDDLE = range(3)

#: ``{video_id: [(start_sec, middle_start_sec, middle_end_sec, end_sec), ...]}``: each instance's phases.
Phases = Mapping[str, Sequence[tuple[float, float, float, float]]]


@dataclass(frozen=True)
class ProbeResult:
    """The probe's scores on the evaluation subset (recalls in [0, 1]) and the snippet counts it used."""

    boundary_accuracy: float
    middle_accuracy: float
    background_accuracy: float
    balanced_accuracy: float
    train_balanced_accuracy: float
    num_train_snippets: int
    num_val_snippets: int
    val_counts: tuple[int, int, int]  # background, boundary, middle snippets of the evaluation subset
    #: ``confusion[i][j]``: the share of the evaluation snippets of phase ``i`` predicted as phase ``j`` (rows sum to 1)
    confusion: tuple[tuple[float, float, float], ...] = ()
    #: inside an instance (boundary or middle) vs background: the mean of the two recalls (chance 1/2). What a head
    #: needs to place an action's extent, whichever inside phase a snippet is taken for.
    inside_accuracy: float = float("nan")

    def to_dict(self) -> dict:
        return asdict(self)


def synthetic_phases(metadata_path: str | os.PathLike) -> dict[str, list[tuple[float, float, float, float]]]:
    """Each instance's exact phases from a synthetic dataset's ``synthetic.json`` (frames turned into seconds)."""
    metadata = json.loads(Path(metadata_path).read_text(encoding="utf-8"))
    phases: dict[str, list[tuple[float, float, float, float]]] = {}
    for video_id, video in metadata["videos"].items():
        fps = float(video["fps"])
        phases[video_id] = [(i["start_frame"] / fps, i["middle_start_frame"] / fps, i["middle_end_frame"] / fps,
                             i["end_frame"] / fps) for i in video["instances"]]
    return phases


def synthetic_phases_beside(annotations_path: str | os.PathLike) -> Phases | None:
    """The exact phases of the lofi synthetic dataset whose annotations are ``annotations_path`` (its
    ``synthetic.json`` beside them), None for any other dataset (the probe then uses ``boundary_frac``)."""
    metadata = Path(annotations_path).parent / METADATA_FILE
    return synthetic_phases(metadata) if metadata.is_file() else None


def _instance_phases(video: VideoAnnotation, phases: Phases | None, *, boundary_frac: float,
                     half_snippet_sec: float) -> list[tuple[float, float, float, float]]:
    if phases is not None and video.video_id in phases:
        return [tuple(map(float, p)) for p in phases[video.video_id]]  # type: ignore[misc]
    rows = []
    for segment in video.segments:
        length = segment.end_sec - segment.start_sec
        edge = min(max(boundary_frac * length, half_snippet_sec), length / 2)
        rows.append((segment.start_sec, segment.start_sec + edge, segment.end_sec - edge, segment.end_sec))
    return rows


def snippet_phases(video: VideoAnnotation, num_snippets: int, *, duration_sec: float, phases: Phases | None = None,
                   boundary_frac: float = 0.15) -> torch.Tensor:
    """``[T]`` phase index (:data:`PHASES`) of each of ``num_snippets`` snippets evenly covering ``duration_sec``."""
    snippet_sec = duration_sec / num_snippets
    centres = (torch.arange(num_snippets, dtype=torch.float64) + 0.5) * snippet_sec  # [T]
    labels = torch.full((num_snippets,), BACKGROUND, dtype=torch.long)
    for start, middle_start, middle_end, end in _instance_phases(video, phases, boundary_frac=boundary_frac,
                                                                 half_snippet_sec=snippet_sec / 2):
        inside = (centres >= start) & (centres < end)
        labels[inside] = BOUNDARY
        labels[inside & (centres >= middle_start) & (centres < middle_end)] = MIDDLE
    return labels


def _snippets(features_dir: Path, videos: AnnotationSet, phases: Phases | None,
              boundary_frac: float) -> tuple[torch.Tensor, torch.Tensor]:
    """All snippets of ``videos``: features ``[N, D]`` and phase labels ``[N]``."""
    xs, ys = [], []
    for video in videos:
        path = find_feature_file(features_dir, video.video_id)
        if path is None:
            raise FileNotFoundError(f"{features_dir}: no feature file for video {video.video_id!r}")
        features, meta = read_features(path)  # [D, T]
        duration = meta.get("duration_sec") or video.duration_sec
        if not duration:
            raise ValueError(f"{path}: no duration_sec in the file's meta or the annotations; cannot place snippets")
        xs.append(features.T)  # [T, D]
        ys.append(snippet_phases(video, features.shape[1], duration_sec=float(duration), phases=phases,
                                 boundary_frac=boundary_frac))
    return torch.cat(xs), torch.cat(ys)


def _confusion(logits: torch.Tensor, labels: torch.Tensor) -> tuple[tuple[float, float, float], ...]:
    """Row ``i``: the shares of phase ``i``'s snippets predicted as each phase (NaN for a phase with no snippet)."""
    predicted = logits.argmax(dim=1)
    rows = []
    for k in range(len(PHASES)):
        mine = predicted[labels == k]
        if mine.numel() == 0:
            rows.append((float("nan"),) * len(PHASES))
            continue
        counts = torch.bincount(mine, minlength=len(PHASES)).double() / mine.numel()
        rows.append(tuple(float(c) for c in counts))
    return tuple(rows)


def _inside_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    predicted_inside = logits.argmax(dim=1) != BACKGROUND
    inside = labels != BACKGROUND
    if inside.all() or not inside.any():
        return float("nan")
    return 0.5 * (float(predicted_inside[inside].double().mean()) + float((~predicted_inside[~inside]).double().mean()))


def _recalls(confusion: tuple[tuple[float, float, float], ...]) -> list[float]:
    """Each phase's recall: the confusion matrix's diagonal."""
    return [row[k] for k, row in enumerate(confusion)]


def fit_linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, *, seed: int = 0, weight_decay: float = 1e-3,
                     steps: int = 300) -> torch.nn.Linear:
    """A class-weighted multinomial logistic regression on standardised ``[N, D]`` inputs (full-batch L-BFGS)."""
    generator = torch.Generator().manual_seed(seed)
    probe = torch.nn.Linear(train_x.shape[1], len(PHASES)).double()
    with torch.no_grad():
        probe.weight.copy_(torch.randn(probe.weight.shape, generator=generator, dtype=torch.float64) * 1e-3)
        probe.bias.zero_()
    counts = torch.bincount(train_y, minlength=len(PHASES)).double()
    weights = counts.sum() / (len(PHASES) * counts.clamp(min=1))  # [3]
    optimizer = torch.optim.LBFGS(probe.parameters(), lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")
    x = train_x.double()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(probe(x), train_y, weight=weights) + weight_decay * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return probe


def probe_boundaries(features_dir: str | os.PathLike, annotations: AnnotationSet, *, train_subset: str,
                     val_subset: str, phases: Phases | None = None, seed: int = 0,
                     boundary_frac: float = 0.15) -> ProbeResult:
    """Fit the three-phase linear probe on ``train_subset``'s snippet features and score it on ``val_subset``'s."""
    features_dir = Path(features_dir)
    train_x, train_y = _snippets(features_dir, annotations.subset(train_subset), phases, boundary_frac)
    val_x, val_y = _snippets(features_dir, annotations.subset(val_subset), phases, boundary_frac)
    mean, std = train_x.mean(dim=0), train_x.std(dim=0).clamp(min=1e-6)  # [D] each
    train_x, val_x = (train_x - mean) / std, (val_x - mean) / std
    probe = fit_linear_probe(train_x, train_y, seed=seed)
    with torch.no_grad():
        val_logits = probe(val_x.double())  # [N, 3]
        val_confusion = _confusion(val_logits, val_y)
        val_recalls = _recalls(val_confusion)
        train_recalls = _recalls(_confusion(probe(train_x.double()), train_y))
    counts = torch.bincount(val_y, minlength=len(PHASES)).tolist()
    return ProbeResult(boundary_accuracy=val_recalls[BOUNDARY], middle_accuracy=val_recalls[MIDDLE],
                       background_accuracy=val_recalls[BACKGROUND],
                       balanced_accuracy=sum(val_recalls) / len(PHASES),
                       train_balanced_accuracy=sum(train_recalls) / len(PHASES),
                       num_train_snippets=int(train_y.numel()), num_val_snippets=int(val_y.numel()),
                       val_counts=(counts[0], counts[1], counts[2]), confusion=val_confusion,
                       inside_accuracy=_inside_accuracy(val_logits, val_y))

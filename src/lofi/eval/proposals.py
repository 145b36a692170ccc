"""Proposal metrics: average recall vs average number of proposals (AR@AN) and its AUC, as the official
ActivityNet evaluator computes them.

The algorithm is that of ``activitynet/ActivityNet`` ``Evaluation/eval_proposal.py`` (``ANETproposal`` and
``average_recall_vs_avg_nr_proposals``), with ``V`` the videos of the subset that have ground truth, ``P`` every
proposal given (videos outside the subset included, as the official loader keeps them) and ``A`` =
``max_avg_proposals``:

* ``ratio = A * V / P``; each evaluated video keeps its top ``n_i = min(int(len_i * ratio), len_i)`` proposals,
  ranked by the official ``np.argsort(scores)[::-1]`` on its scores in input order (ties: see
  :mod:`lofi.eval.detection`); ``T = sum_i n_i`` over evaluated videos;
* ``pcn[j] = (j + 1) / 100 * (A * V / T)`` for ``j = 0..99``; at step ``j`` video ``i`` uses its top
  ``min(int(n_i * pcn[j]), n_i)`` kept proposals;
* a ground-truth segment is recalled at threshold ``t`` when any of those proposals has tIoU >= ``t`` with it
  (proposals are not consumed: one proposal may recall several segments);
  ``recall[k, j] = recalled / total ground truth``; ``average_recall[j] = mean_k recall[k, j]``;
* ``proposals_per_video[j] = pcn[j] * T / V`` (= ``(j + 1) * A / 100`` up to rounding);
* ``auc = 100 * trapz(average_recall, proposals_per_video) / proposals_per_video[-1]`` -- the official print
  divides by the last AN, not by ``AN[-1] - AN[0]``; with ``A = 100`` the two differ by a factor 99/100;
* ``ar_at[an] = average_recall[j]`` at the grid point with ``proposals_per_video[j] == an`` (``AR@1`` is
  ``average_recall[0]`` and ``AR@100`` is ``average_recall[99]`` for ``A = 100``, as BMN and G-TAD report).

A video with ground truth but no proposal recalls nothing and adds nothing to ``T``. With no proposal at all for
the evaluated videos (where the official code divides by zero) every recall is 0, ``proposals_per_video`` is
``(j + 1) * A / 100`` and ``auc`` is 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence, Union

import numpy as np
from numpy.typing import ArrayLike

from lofi.data.annotations import AnnotationSet, Detection, VideoAnnotation
from lofi.data.detection_table import DetectionTable
from lofi.eval.detection import ACTIVITYNET_TIOU_THRESHOLDS, check_thresholds, evaluated_set
from lofi.eval.tiou import segment_tiou

#: One proposal: a :class:`Detection` (label ignored) or a ``(start_sec, end_sec, score)`` tuple.
Proposal = Union[Detection, Sequence[float]]

#: The AN values reported by BMN, G-TAD and most proposal papers.
REPORTED_AN: tuple[int, ...] = (1, 5, 10, 100)

_NUM_STEPS = 100  # the official grid: pcn = 1/100 .. 100/100


@dataclass(frozen=True)
class ProposalCounts:
    """What went into the evaluation."""

    num_videos: int  # V: videos of the subset with ground truth
    num_ground_truth: int  # ground-truth segments in those videos
    num_proposals: int  # P: every proposal given, videos outside the subset included
    num_kept: int  # T: proposals kept after the per-video cap, over evaluated videos
    num_videos_without_proposals: int  # evaluated videos with no proposal: nothing recalled there


@dataclass(frozen=True)
class ProposalResult:
    """The AR@AN curve, its per-threshold recall, AUC and the usual AR@AN points."""

    tiou_thresholds: np.ndarray  # [K]
    recall: np.ndarray  # [K, 100]
    average_recall: np.ndarray  # [100], mean of recall over thresholds
    proposals_per_video: np.ndarray  # [100], the AN axis
    auc: float  # in percent, 0..100
    ar_at: dict[int, float]  # AN -> AR, for AN in REPORTED_AN that lie on the grid
    counts: ProposalCounts

    def format(self) -> str:
        """A plain-text table for the terminal."""
        lines = [f"{'AN':>6} {'AR':>7}"]
        lines += [f"{an:>6} {100 * ar:>6.2f}%" for an, ar in self.ar_at.items()]
        lines.append(f"{'AUC':>6} {self.auc:>6.2f}")
        return "\n".join(lines)


def _proposal_rows(video_id: str, proposals: Sequence[Proposal]) -> np.ndarray:
    """``[N, 3]`` (start, end, score) rows; raise ValueError naming the video on bad input."""
    rows = []
    for p in proposals:
        if isinstance(p, Detection):
            rows.append((p.start_sec, p.end_sec, p.score))
        else:
            if len(p) != 3:
                raise ValueError(f"proposal for video {video_id!r}: expected (start_sec, end_sec, score) or a "
                                 f"Detection, got {p!r}")
            rows.append(tuple(float(x) for x in p))
    for start, end, score in rows:
        if not all(math.isfinite(x) for x in (start, end, score)):
            raise ValueError(f"proposal for video {video_id!r}: non-finite start, end or score in "
                             f"{(start, end, score)}")
        if end < start:
            raise ValueError(f"proposal for video {video_id!r}: end_sec {end} < start_sec {start}; fix the "
                             f"decoder or drop the proposal")
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def _rows_by_video(proposals: Mapping[str, Sequence[Proposal]] | DetectionTable) -> dict[str, np.ndarray]:
    """video id -> ``[N, 3]`` (start, end, score) rows in input order."""
    if not isinstance(proposals, DetectionTable):
        return {vid: _proposal_rows(vid, props) for vid, props in proposals.items()}
    proposals.check(source="proposals")
    order = np.argsort(proposals.video_index, kind="stable")  # [M] videos contiguous, input order inside
    bounds = np.searchsorted(proposals.video_index[order], np.arange(len(proposals.video_ids) + 1))
    rows = np.column_stack([proposals.segments_sec, proposals.scores])[order]  # [M, 3]
    return {vid: rows[bounds[i]:bounds[i + 1]] for i, vid in enumerate(proposals.video_ids)}


def evaluate_proposals(ground_truth: AnnotationSet, proposals: Mapping[str, Sequence[Proposal]] | DetectionTable, *,
                       tiou_thresholds: ArrayLike = ACTIVITYNET_TIOU_THRESHOLDS, max_avg_proposals: float = 100,
                       subset: str | None = "validation") -> ProposalResult:
    """AR@AN of ``proposals`` (video id -> proposals) against the ``subset`` of ``ground_truth``.

    ``proposals`` maps video ids to proposals, or is a :class:`DetectionTable` (labels ignored either way:
    proposals are class-agnostic). ``subset=None`` evaluates every video. See the module
    docstring for the exact formulas. Raises ValueError when the subset has no ground-truth segment,
    ``max_avg_proposals`` is not positive, or a proposal is malformed, non-finite or has end < start. Steps:
    :func:`_first_hits`, :func:`_recall_curve`, :func:`_auc_and_points`.
    """
    thresholds = check_thresholds(tiou_thresholds)  # [K]
    if not (math.isfinite(max_avg_proposals) and max_avg_proposals > 0):
        raise ValueError(f"max_avg_proposals {max_avg_proposals}: must be a positive number (100 for ActivityNet)")
    gt_set = evaluated_set(ground_truth, subset)
    gt_videos = [v for v in gt_set if v.segments]  # the official video list: videos with ground truth
    if not gt_videos:
        raise ValueError(f"{ground_truth.source}: no ground-truth segments in subset {subset!r}; nothing to "
                         f"evaluate (pick another subset, or subset=None for all videos)")
    rows = _rows_by_video(proposals)
    num_videos = len(gt_videos)
    total_given = sum(r.shape[0] for r in rows.values())
    ratio = max_avg_proposals * float(num_videos) / total_given if total_given else 0.0
    hits = _first_hits(gt_videos, rows, thresholds, ratio=ratio)
    recall, proposals_per_video = _recall_curve(hits, thresholds, num_videos=num_videos,
                                                max_avg_proposals=max_avg_proposals)  # [K, 100], [100]
    average_recall = recall.mean(axis=0)  # [100]
    auc, ar_at = _auc_and_points(average_recall, proposals_per_video)
    counts = ProposalCounts(num_videos=num_videos, num_ground_truth=hits.num_gt, num_proposals=total_given,
                            num_kept=sum(hits.kept), num_videos_without_proposals=hits.num_without)
    return ProposalResult(tiou_thresholds=thresholds, recall=recall, average_recall=average_recall,
                          proposals_per_video=proposals_per_video, auc=auc, ar_at=ar_at, counts=counts)


@dataclass(frozen=True)
class _FirstHits:
    """Per evaluated video: the proposals kept and the first rank at which each ground truth is reached."""

    first_hit: list[np.ndarray]  # per video [G, K]: proposals needed (1-based rank), inf if never reached
    kept: list[int]  # per video n_i (0 for videos without proposals)
    num_gt: int  # ground-truth segments over the videos
    num_without: int  # videos without proposals


def _first_hits(gt_videos: Sequence[VideoAnnotation], rows: Mapping[str, np.ndarray], thresholds: np.ndarray, *,
                ratio: float) -> _FirstHits:
    """Step 1, per video: cap the proposals at ``ratio`` of them (best first, the official tie rule), then the
    first rank (1-based) at which each ground truth is reached, per threshold."""
    num_thr = thresholds.size
    first_hit: list[np.ndarray] = []
    kept: list[int] = []
    num_gt = 0
    num_without = 0
    for video in gt_videos:
        gt_segs = np.array([(s.start_sec, s.end_sec) for s in video.segments], dtype=np.float64)  # [G, 2]
        num_gt += gt_segs.shape[0]
        props = rows.get(video.video_id)
        if props is None or props.shape[0] == 0:
            num_without += 1
            kept.append(0)
            first_hit.append(np.full((gt_segs.shape[0], num_thr), np.inf))
            continue
        order = np.argsort(props[:, 2])[::-1]  # official tie rule
        n_keep = min(int(props.shape[0] * ratio), props.shape[0])
        ranked = props[order[:n_keep], :2]  # [n_i, 2]
        kept.append(n_keep)
        tiou = segment_tiou(gt_segs, ranked)  # [G, n_i]
        passes = tiou[:, :, None] >= thresholds[None, None, :]  # [G, n_i, K]
        any_pass = passes.any(axis=1)  # [G, K]
        first = passes.argmax(axis=1) + 1.0  # [G, K] proposals needed to reach it
        first_hit.append(np.where(any_pass, first, np.inf))
    return _FirstHits(first_hit=first_hit, kept=kept, num_gt=num_gt, num_without=num_without)


def _recall_curve(hits: _FirstHits, thresholds: np.ndarray, *, num_videos: int,
                  max_avg_proposals: float) -> tuple[np.ndarray, np.ndarray]:
    """Step 2: recall ``[K, 100]`` on the official grid of proposal budgets, and that grid's proposals per video
    ``[100]`` (the AN axis)."""
    total_kept = sum(hits.kept)
    steps = np.arange(1, _NUM_STEPS + 1)
    recall = np.zeros((thresholds.size, _NUM_STEPS))  # [K, 100]
    if total_kept == 0:
        return recall, steps / 100.0 * max_avg_proposals  # [100]
    pcn = steps / 100.0 * (max_avg_proposals * float(num_videos) / total_kept)  # [100]
    matches = np.zeros((thresholds.size, _NUM_STEPS))  # [K, 100]
    for n_keep, first_hit in zip(hits.kept, hits.first_hit):
        if n_keep == 0:
            continue
        budget = np.minimum((n_keep * pcn).astype(np.int64), n_keep)  # [100]
        matches += (first_hit[:, :, None] <= budget[None, None, :]).sum(axis=0)  # [G, K, 100] -> [K, 100]
    return matches / hits.num_gt, pcn * (float(total_kept) / num_videos)  # [K, 100], [100]


def _auc_and_points(average_recall: np.ndarray, proposals_per_video: np.ndarray) -> tuple[float, dict[int, float]]:
    """Step 3: the area under AR@AN in percent (``np.trapz`` arithmetic) and AR at each of :data:`REPORTED_AN`
    that lies on the grid."""
    widths = np.diff(proposals_per_video)  # np.trapz arithmetic
    area = float((widths * (average_recall[1:] + average_recall[:-1]) / 2.0).sum())
    auc = 100.0 * area / float(proposals_per_video[-1])
    ar_at = {}
    for an in REPORTED_AN:
        close = np.nonzero(np.abs(proposals_per_video - an) <= 1e-6 * an)[0]
        if close.size:
            ar_at[an] = float(average_recall[close[0]])
    return auc, ar_at

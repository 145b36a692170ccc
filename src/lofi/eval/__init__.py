"""Evaluation: detection mAP and proposal AR@AN as the official ActivityNet evaluators compute them."""

from lofi.eval.detection import (
    ACTIVITYNET_TIOU_THRESHOLDS,
    THUMOS14_TIOU_THRESHOLDS,
    DetectionCounts,
    DetectionResult,
    evaluate_detection,
    parse_tiou_thresholds,
)
from lofi.eval.proposals import REPORTED_AN, ProposalCounts, ProposalResult, evaluate_proposals
from lofi.eval.tiou import segment_tiou

__all__ = [
    "ACTIVITYNET_TIOU_THRESHOLDS",
    "THUMOS14_TIOU_THRESHOLDS",
    "DetectionCounts",
    "DetectionResult",
    "ProposalCounts",
    "ProposalResult",
    "REPORTED_AN",
    "evaluate_detection",
    "evaluate_proposals",
    "parse_tiou_thresholds",
    "segment_tiou",
]

"""Evaluation: temporal action detection mAP as the official ActivityNet evaluator computes it."""

from lofi.eval.detection import (
    ACTIVITYNET_TIOU_THRESHOLDS,
    THUMOS14_TIOU_THRESHOLDS,
    DetectionCounts,
    DetectionResult,
    evaluate_detection,
    parse_tiou_thresholds,
)
from lofi.eval.tiou import segment_tiou

__all__ = [
    "ACTIVITYNET_TIOU_THRESHOLDS",
    "THUMOS14_TIOU_THRESHOLDS",
    "DetectionCounts",
    "DetectionResult",
    "evaluate_detection",
    "parse_tiou_thresholds",
    "segment_tiou",
]

"""A plain-Python rendering of greedy NMS, the reference the vectorised :func:`lofi.postprocess.nms` is checked
against (``tests/postprocess/test_nms.py``) and timed against (``benchmarks/postprocess.py``)."""

from __future__ import annotations


def reference_nms(segments: list[list[float]], scores: list[float], iou_threshold: float,
                  labels: list[int] | None = None) -> list[int]:
    """Plain-Python greedy NMS: highest score first, ties by lower index."""
    def iou(a: list[float], b: list[float]) -> float:
        inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
        union = (a[1] - a[0]) + (b[1] - b[0]) - inter
        return inter / union if union > 0 else 0.0

    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept: list[int] = []
    for i in order:
        if all(iou(segments[i], segments[k]) <= iou_threshold or (labels is not None and labels[i] != labels[k])
               for k in kept):
            kept.append(i)
    return kept

"""Post-processing of raw per-video predictions into detections, replayable without the model.

``postprocess_video(segments, scores, labels, PostprocessConfig(...), classes=...)`` is the entry point; the
building blocks (:func:`nms`, :func:`soft_nms`, :func:`segment_iou`, score fusion) are pure torch.
"""

from lofi.postprocess.nms import (
    POSTPROCESS_METHODS,
    PostprocessConfig,
    expand_to_video_classes,
    fuse_video_scores,
    label_and_suppress,
    nms,
    postprocess_video,
    segment_iou,
    soft_nms,
)

__all__ = [
    "POSTPROCESS_METHODS",
    "PostprocessConfig",
    "expand_to_video_classes",
    "fuse_video_scores",
    "label_and_suppress",
    "nms",
    "postprocess_video",
    "segment_iou",
    "soft_nms",
]

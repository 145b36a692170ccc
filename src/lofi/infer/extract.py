"""Stage 3's first half: full-fidelity features of every video with a frozen encoder, one file per video.

Each file (``<features_dir>/<video_id>.pt``, :func:`lofi.data.features.write_features`) holds ``[D, T]`` float32
features and the settings that made them (encoder, its weights file, L, frame size, frames per snippet), so a
head trained on them can say where its inputs came from. Videos are shared among processes under torchrun.

With ``data.windows`` (sliding windows) a video is not rescaled to ``L`` snippets: it gets
``T = ceil(duration_sec * snippets_per_sec)`` snippets spread evenly over it (each ``snippet_sec = duration_sec / T``
long, within one snippet of the nominal rate over the whole video), decoded without the frame cache and encoded
``L`` snippets at a time (the length the encoder was trained at; only one chunk's frames are in memory, so an hour
of video costs no more than a window); the file holds ``[D, T]`` and
``snippets_per_sec`` / ``snippet_sec`` in its meta, for :class:`lofi.data.feature_windows.FeatureWindowDataset`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from lofi.core.fidelity import Fidelity
from lofi.core.windows import video_num_snippets
from lofi.data.batches import iter_batches
from lofi.data.chunked import iter_snippet_chunks
from lofi.data.dataset import skip_or_raise
from lofi.data.features import feature_path, write_features
from lofi.data.sampling import SnippetSpec
from lofi.data.video import VideoReadError, find_video_files, video_file
from lofi.data.windows import VideoWindowDataset, collate_windows
from lofi.models.encoders.base import normalize_frames
from lofi.models.options import encoder_kwargs
from lofi.runtime.builders import build_encoder, frame_cache
from lofi.runtime.context import RunContext
from lofi.runtime.distributed import barrier
from lofi.runtime.run_identity import file_digest, mark_complete, weights_input

logger = logging.getLogger(__name__)


@torch.no_grad()
def extract_features(context: RunContext, *, encoder_weights: str | Path | None, features_dir: str | Path,
                     subsets: tuple[str, ...] | None = None, resume: bool = True) -> Path:
    """Write the features of every video of ``subsets`` (default: the training and evaluation subsets) into
    ``features_dir``; with ``resume``, a folder that holds the finished features of the same settings is reused
    (see :mod:`lofi.runtime.run_identity`)."""
    out = Path(features_dir)
    subsets = subsets or (context.config.data.train_subset, context.config.data.val_subset)
    with context.guard(out, "extract", inputs=extract_inputs(context, encoder_weights, subsets), resume=resume,
                       subsets=()) as start:
        if start.complete:
            if context.is_main:
                print(f"{out}: features of these settings are there already; reusing them (--no-resume: extract "
                      f"again)", file=sys.stderr)
            return out
        _extract(context, encoder_weights=encoder_weights, out=out, subsets=subsets)
        if context.is_main:
            mark_complete(out)
        barrier()
    return out


def extract_inputs(context: RunContext, encoder_weights: str | Path | None,
                   subsets: tuple[str, ...] | None = None) -> dict[str, str]:
    """The digests an extraction's identity holds: the data, the encoder's weights and the subsets (default: the
    training and evaluation subsets)."""
    subsets = subsets or (context.config.data.train_subset, context.config.data.val_subset)
    return {**context.data_inputs(), **weights_input(encoder_weights), "subsets": ",".join(subsets)}


def _extract(context: RunContext, *, encoder_weights: str | Path | None, out: Path, subsets: tuple[str, ...]) -> None:
    config = context.config
    if config.data.windows is not None:
        _extract_at_rate(context, encoder_weights=encoder_weights, out=out, subsets=subsets)
        return
    full = Fidelity("full", config.fidelity.num_snippets, config.fidelity.frame_size_px)
    videos = context.annotations.subset(*subsets)
    dataset = VideoWindowDataset(annotations=videos, videos_dir=config.data.videos, classes=context.classes,
                                 fidelities={"full": full}, frames_per_snippet=config.data.frames_per_snippet,
                                 frame_stride=config.data.frame_stride, cache=frame_cache(context, {"full": full}),
                                 augment=False, on_error=config.data.on_error, seed=config.seed,
                                 skip_log=context.skip_log)
    encoder = build_encoder(context, encoder_weights).to(context.device).eval()
    meta = _meta(context, encoder_weights, full)
    mine = list(range(context.rank, len(dataset), context.world_size))
    batch_size = config.head.extract_batch_size  # >= 1: checked at load
    bar = tqdm(total=len(mine), desc="extract", unit="video", disable=not context.progress)
    for batch in iter_batches(dataset, batch_size=batch_size, collate=collate_windows, indices=mine,
                              on_chunk=bar.update):
        frames = normalize_frames(batch["frames"].to(context.device))  # [B, T, F, 3, S, S]
        features = encoder(frames).float().cpu()  # [B, D, T]
        for video_id, feats, duration in zip(batch["video_ids"], features, batch["durations_sec"].tolist()):
            write_features(feature_path(out, video_id), feats, video_id=video_id,
                           meta={**meta, "duration_sec": float(duration)})
    bar.close()
    for video_id, reason in dataset.skipped:
        logger.warning("extract: skipped %s: %s", video_id, reason)
    barrier()  # every process's files are written before anyone reads them


def _meta(context: RunContext, encoder_weights: str | Path | None, full: Fidelity) -> dict:
    config = context.config
    return {"encoder": config.model.encoder, "encoder_options": encoder_kwargs(config.model),
            "encoder_weights": str(encoder_weights) if encoder_weights else None,
            "encoder_weights_sha256": file_digest(encoder_weights) if encoder_weights else None,
            "num_snippets": full.num_snippets, "frame_size_px": full.frame_size_px,
            "frames_per_snippet": config.data.frames_per_snippet, "frame_stride": config.data.frame_stride}


def _extract_at_rate(context: RunContext, *, encoder_weights: str | Path | None, out: Path,
                     subsets: tuple[str, ...]) -> None:
    """Sliding windows: each video at ``data.windows.snippets_per_sec``, ``[D, T]`` per file, decoded and encoded
    ``L`` snippets at a time (:func:`~lofi.data.chunked.iter_snippet_chunks`): memory holds one chunk's frames."""
    config, windows = context.config, context.config.data.windows
    assert windows is not None
    window = config.fidelity.num_snippets
    videos = context.annotations.subset(*subsets)
    encoder = build_encoder(context, encoder_weights).to(context.device).eval()
    meta = {**_meta(context, encoder_weights, Fidelity("full", window, config.fidelity.frame_size_px)),
            "snippets_per_sec": windows.snippets_per_sec}
    mine = [v for i, v in enumerate(videos) if i % context.world_size == context.rank]
    skipped: list[tuple[str, str]] = []
    files = find_video_files(config.data.videos)
    for video in tqdm(mine, desc="extract", unit="video", disable=not context.progress):
        if video.duration_sec is None or not video.duration_sec > 0:
            raise ValueError(f"video {video.video_id!r}: sliding windows need its duration_sec (> 0) in the "
                             f"annotations to choose its number of snippets")
        count = video_num_snippets(float(video.duration_sec), windows.snippets_per_sec)
        spec = SnippetSpec(num_snippets=count, frames_per_snippet=config.data.frames_per_snippet,
                           frame_stride=config.data.frame_stride, short_side_px=config.fidelity.frame_size_px)
        chunks: list[torch.Tensor] = []
        try:
            path = video_file(files, config.data.videos, video.video_id)
            for chunk in iter_snippet_chunks(path, spec, chunk_snippets=window):  # one window's frames at a time
                frames = chunk.clip.frames.unsqueeze(0).to(context.device)  # [1, T, F, 3, S, S] uint8, T <= L
                chunks.append(encoder(normalize_frames(frames)).float().cpu())  # [1, D, T]
                duration = chunk.clip.info.duration_sec
        except VideoReadError as exc:
            skip_or_raise(exc, on_error=config.data.on_error, skipped=skipped, video_id=video.video_id,
                          what=f"video {video.video_id!r}", log=context.skip_log)
            continue
        features = torch.cat(chunks, dim=2)[0]  # [D, T]
        write_features(feature_path(out, video.video_id), features, video_id=video.video_id,
                       meta={**meta, "duration_sec": duration, "snippet_sec": duration / count})
    for video_id, reason in skipped:
        logger.warning("extract: skipped %s: %s", video_id, reason)
    barrier()  # every process's files are written before anyone reads them

"""Writing a synthetic dataset to disk: H.264 MP4 files, ActivityNet-1.3 annotations and generation metadata."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from fractions import Fraction
from multiprocessing import get_context
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from lofi.data.annotations import AnnotationSet, Segment, VideoAnnotation
from lofi.data.formats.activitynet import write_ground_truth
from lofi.data.synthetic.config import ONE_CLASS_PER_VIDEO, SyntheticConfig
from lofi.data.synthetic.motions import MOTION_PATTERNS
from lofi.data.synthetic.render import camera_path, make_texture, render_frame, simulate_scene
from lofi.data.synthetic.timeline import VideoPlan, assign_labels, plan_timeline

#: Bumped whenever the generative rules change, so that datasets are traceable to the code that made them.
GENERATOR_VERSION = 3
ANNOTATIONS_FILE = "annotations.json"
METADATA_FILE = "synthetic.json"
VIDEOS_DIR = "videos"


@dataclass(frozen=True)
class SyntheticDataset:
    """What :func:`generate_dataset` wrote: paths, the annotations, and how fast it went."""

    root: Path
    annotations_path: Path
    metadata_path: Path
    videos_dir: Path
    annotations: AnnotationSet
    num_frames: int
    seconds: float

    @property
    def frames_per_sec(self) -> float:
        return self.num_frames / max(self.seconds, 1e-9)


def video_id(index: int) -> str:
    return f"video_{index:04d}"


def plan_dataset(config: SyntheticConfig) -> list[VideoPlan]:
    """The timelines and labels of every video; depends only on the config (seed included)."""
    num_val = int(round(config.num_videos * config.validation_fraction))
    if config.validation_fraction > 0 and config.num_videos >= 2:
        num_val = min(max(num_val, 1), config.num_videos - 1)
    plans = []
    for i in range(config.num_videos):
        subset = "validation" if i >= config.num_videos - num_val else "training"
        rng = np.random.default_rng([config.seed, i, 0])
        plans.append(plan_timeline(rng, config, video_id=video_id(i), subset=subset))
    return assign_labels(plans, config.class_names, np.random.default_rng([config.seed, 1 << 20]),
                         per_video=config.layout in ONE_CLASS_PER_VIDEO)


def to_annotations(plans: list[VideoPlan], config: SyntheticConfig) -> AnnotationSet:
    """ActivityNet-style annotations whose boundaries are exact frame times (``frame / fps``)."""
    videos = []
    for plan in plans:
        segments = tuple(Segment(start_sec=round(inst.start_frame / config.fps, 6),
                                 end_sec=round(inst.end_frame / config.fps, 6), label=inst.label)
                         for inst in plan.instances)
        videos.append(VideoAnnotation(video_id=plan.video_id, subset=plan.subset, segments=segments,
                                      duration_sec=round(plan.num_frames / config.fps, 6), fps=config.fps,
                                      resolution=f"{config.width_px}x{config.height_px}"))
    return AnnotationSet.from_videos(videos, source="synthetic", classes=config.class_names)


def render_video(plan: VideoPlan, config: SyntheticConfig, index: int):
    """Yield the frames of one planned video, uint8 [H, W, 3] each; deterministic for (seed, index)."""
    rng = np.random.default_rng([config.seed, index, 1])
    short_px = min(config.width_px, config.height_px)
    pan_margin_px = max(1, int(0.15 * short_px))
    background = make_texture(rng, height_px=config.height_px + 2 * pan_margin_px,
                              width_px=config.width_px + 2 * pan_margin_px, contrast=config.texture_contrast)
    scene = simulate_scene(rng, plan, config)
    pan_speed = rng.uniform(*config.camera_pan_frac_per_sec) * short_px / config.fps
    pan = camera_path(rng, num_frames=plan.num_frames, margin_px=pan_margin_px, speed_px_per_frame=pan_speed)
    for n in range(plan.num_frames):
        noise = None
        if config.noise_std > 0:
            noise = rng.normal(0, config.noise_std, size=(config.height_px, config.width_px, 1)).astype(np.float32)
        yield render_frame(background, scene, n, pan_xy=(int(pan[n, 0]), int(pan[n, 1])),
                           height_px=config.height_px, width_px=config.width_px, noise=noise)


def write_mp4(path: Path, frames, *, fps: float, width_px: int, height_px: int, crf: int,
              keyframe_interval_frames: int) -> int:
    """Encode RGB frames to H.264 (yuv420p) in an MP4 with the index at the front; returns the frame count."""
    rate = Fraction(fps).limit_denominator(1001)
    count = 0
    with av.open(str(path), mode="w", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width_px, height_px, "yuv420p"
        # mbtree is off because x264's AVX-512 macroblock-tree code is nondeterministic: with it, encoding the
        # same frames twice in one process can give different bytes (tests/synthetic, "byte_identical")
        stream.options = {"crf": str(crf), "preset": "veryfast", "g": str(keyframe_interval_frames),
                          "threads": "1", "mbtree": "0"}
        for frame in frames:
            # reformat copies into frames that own their memory: from_ndarray may alias the numpy buffer
            yuv = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p")
            for packet in stream.encode(yuv):
                container.mux(packet)
            count += 1
        for packet in stream.encode():
            container.mux(packet)
    return count


def _render_and_write(args: tuple[VideoPlan, SyntheticConfig, int, str]) -> int:
    plan, config, index, path = args
    return write_mp4(Path(path), render_video(plan, config, index), fps=config.fps, width_px=config.width_px,
                     height_px=config.height_px, crf=config.crf,
                     keyframe_interval_frames=max(1, int(round(config.keyframe_interval_sec * config.fps))))


def _metadata(plans: list[VideoPlan], config: SyntheticConfig) -> dict:
    return {
        "generator_version": GENERATOR_VERSION,
        "config": config.to_dict(),
        "classes": {name: MOTION_PATTERNS[name].description for name in config.class_names},
        "videos": {
            plan.video_id: {
                "subset": plan.subset,
                "num_frames": plan.num_frames,
                "fps": config.fps,
                "instances": [
                    {**asdict(inst),
                     "start_sec": round(inst.start_frame / config.fps, 6),
                     "end_sec": round(inst.end_frame / config.fps, 6),
                     "middle_sec": [round(inst.middle_start_frame / config.fps, 6),
                                    round(inst.middle_end_frame / config.fps, 6)]}
                    for inst in plan.instances
                ],
            }
            for plan in plans
        },
    }


def generate_dataset(out_dir: str | os.PathLike, config: SyntheticConfig, *, workers: int = 0,
                     progress: bool = True) -> SyntheticDataset:
    """Write ``config.num_videos`` MP4 files to ``out_dir/videos`` with ``annotations.json`` and ``synthetic.json``.

    ``workers`` = 0 uses one process per core (at most one per video). The annotations and metadata depend only
    on the config, so the same seed gives byte-identical files.
    """
    root = Path(out_dir)
    videos_dir = root / VIDEOS_DIR
    videos_dir.mkdir(parents=True, exist_ok=True)
    plans = plan_dataset(config)
    annotations = to_annotations(plans, config)
    jobs = [(plan, config, i, str(videos_dir / f"{plan.video_id}.mp4")) for i, plan in enumerate(plans)]
    workers = workers or min(os.cpu_count() or 1, len(jobs))
    start = time.perf_counter()
    total_frames = 0
    with ExitStack() as stack:
        if workers <= 1:
            frame_counts = map(_render_and_write, jobs)
        else:
            pool = stack.enter_context(ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")))
            frame_counts = pool.map(_render_and_write, jobs)
        bar = stack.enter_context(tqdm(total=len(jobs), unit="video", desc="synth", disable=not progress))
        for frames in frame_counts:
            total_frames += frames
            bar.update()
            bar.set_postfix(fps=f"{total_frames / (time.perf_counter() - start):.0f}")
    seconds = time.perf_counter() - start
    annotations_path = root / ANNOTATIONS_FILE
    write_ground_truth(annotations, annotations_path)
    metadata_path = root / METADATA_FILE
    metadata_path.write_text(json.dumps(_metadata(plans, config), indent=1, sort_keys=True) + "\n")
    return SyntheticDataset(root=root, annotations_path=annotations_path, metadata_path=metadata_path,
                            videos_dir=videos_dir, annotations=annotations, num_frames=total_frames,
                            seconds=seconds)


def generated_with(data_dir: str | os.PathLike) -> tuple[int, dict] | None:
    """``(generator version, config)`` recorded in a synthetic dataset's ``synthetic.json``, None if unreadable."""
    try:
        metadata = json.loads((Path(data_dir) / METADATA_FILE).read_text(encoding="utf-8"))
        return int(metadata["generator_version"]), dict(metadata["config"])
    except (OSError, ValueError, KeyError, TypeError):
        return None

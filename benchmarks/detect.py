"""``lofi detect`` on an hour-long video against PyAV decoding the same video alone, side by side in one run.

    python benchmarks/detect.py [--work DIR] [--duration-sec 3600] [--short-sec 300]
                                [--snippets-per-sec 0.25 0.5 1 2 4] [--decode-threads 1] [--torch-threads auto 2]
                                [--cpus 0 1]

The video (generated once, cached in ``--work``): ``--duration-sec`` of 15 fps 128x128 H.264 (libx264 ``veryfast``,
CRF 23, a keyframe every 3 s, no audio), a slowly shifting colour gradient with a few shapes moving over it.

Every case runs in its own subprocess, pinned to the same CPUs (``--cpus``, default: all this process may use),
with the same decoder threads (``--decode-threads``). *seconds* is the subprocess's wall time: the whole command,
starting Python and importing torch included; *work s* is the same work timed inside the process (for ``lofi
detect``, the time it prints itself: from reading the first video to writing the results). Peak RSS comes from
``os.wait4`` (the process's own ``ru_maxrss``). The cases:

- *PyAV decode + rgb24, every frame*: every frame decoded and converted to an RGB ``ndarray`` at its size (reference);
- *PyAV decode + lofi's frames*: every packet decoded, and only the frames lofi samples for the configuration
  converted (bilinear resize of the short side + centre crop, as :mod:`lofi.data.sampling` does), PyAV and numpy
  only: the baseline of the ratios;
- *lofi decoding alone*: :func:`lofi.data.chunked.iter_snippet_chunks` over the whole video, no model (it reopens the
  file per chunk and seeks forward across gaps longer than the keyframe interval, so it may decode fewer frames);
- *the model alone*: the encoder (4 chunks per call, as ``lofi detect``) on random frames, as many snippets as the
  video has, then the head over the windows, with ``lofi detect``'s torch threads: what decoding must hide;
- *lofi detect*: ``python -m lofi detect VIDEO --model M.lofi --output out.json -q --decode-threads N``, once per
  ``--torch-threads`` (``auto``: its default, the cores left by the decoder threads; 2 is torch's own default on 2
  cores, i.e. lofi detect before it set the threads). With ``--short-sec`` also on a short video, for peak RSS.

The model (random weights: speed does not depend on them) is the demo's (``tsm_resnet18_slim`` + ``actionformer``,
96 px, 2 frames per snippet 2 apart), trained with sliding windows of ``--window`` snippets (stride half a window) at
each ``--snippets-per-sec``. *ratio* = the baseline's seconds / the case's seconds (throughput relative to decoding
alone; the target for ``lofi detect`` is >= 0.9).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

FPS = 15
SIZE_PX = 128
KEYFRAME_INTERVAL_SEC = 3.0
REPO = Path(__file__).resolve().parents[1]


# -- the video ------------------------------------------------------------------------------------------------
def render_frames(num_frames: int, size: int = SIZE_PX, fps: int = FPS, seed: int = 0):
    """RGB frames ``[size, size, 3]`` uint8: a colour gradient that drifts, with moving rectangles and a disc."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    shapes = [(rng.uniform(0.1, 0.4), rng.uniform(0.05, 0.3), rng.uniform(0, 2 * math.pi),
               rng.integers(40, 255, 3).astype(np.uint8), int(rng.integers(10, 28))) for _ in range(4)]
    disc_y, disc_x = np.mgrid[-12:13, -12:13]
    disc = disc_x ** 2 + disc_y ** 2 <= 144
    for i in range(num_frames):
        t = i / fps
        phase = 0.05 * t
        frame = np.empty((size, size, 3), dtype=np.uint8)
        frame[..., 0] = (127 + 100 * np.sin(2 * math.pi * (xx + phase))).astype(np.uint8)
        frame[..., 1] = (127 + 100 * np.sin(2 * math.pi * (yy - 0.7 * phase))).astype(np.uint8)
        frame[..., 2] = (127 + 100 * np.cos(2 * math.pi * (xx + yy + 0.3 * phase))).astype(np.uint8)
        for k, (speed_x, speed_y, start, colour, side) in enumerate(shapes):
            cx = int((0.5 + 0.4 * math.sin(start + 2 * math.pi * speed_x * t)) * (size - side))
            cy = int((0.5 + 0.4 * math.cos(start + 2 * math.pi * speed_y * t * (1 + k))) * (size - side))
            frame[cy:cy + side, cx:cx + side] = colour
        dx = int((0.5 + 0.4 * math.sin(0.9 * t)) * (size - 25))
        dy = int((0.5 + 0.4 * math.sin(0.37 * t + 1)) * (size - 25))
        frame[dy:dy + 25, dx:dx + 25][disc] = 255
        yield frame


def make_video(work: Path, duration_sec: float) -> Path:
    """The cached benchmark video of ``duration_sec``; generated (and timed) the first time."""
    out = work / f"moving_shapes_{SIZE_PX}px_{FPS}fps_{duration_sec:g}s_g{KEYFRAME_INTERVAL_SEC:g}s.mp4"
    if out.is_file():
        return out
    work.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial.mp4")
    num_frames = int(round(duration_sec * FPS))
    start = time.perf_counter()
    with av.open(str(partial), "w") as dst:
        stream = dst.add_stream("libx264", rate=FPS, options={
            "preset": "veryfast", "crf": "23", "g": str(int(KEYFRAME_INTERVAL_SEC * FPS)), "sc_threshold": "0"})
        stream.width = stream.height = SIZE_PX
        stream.pix_fmt = "yuv420p"
        for i, rgb in enumerate(render_frames(num_frames)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            dst.mux(stream.encode(frame))
        dst.mux(stream.encode())
    partial.rename(out)
    print(f"generated {out.name}: {num_frames} frames in {time.perf_counter() - start:.1f} s "
          f"({out.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    return out


# -- the model ------------------------------------------------------------------------------------------------
def make_model(work: Path, *, snippets_per_sec: float, window: int, frame_size_px: int, encoder: str,
               head: str) -> Path:
    """A model file of the demo's architecture with random weights, trained (as far as the spec says) on sliding
    windows of ``window`` snippets at ``snippets_per_sec``, stride half a window."""
    import torch

    from lofi.infer.model_file import ModelSpec, WindowSpec, write_model_file
    from lofi.models import create_encoder, create_head

    out = work / f"model_{encoder}_{head}_{frame_size_px}px_L{window}_sps{snippets_per_sec:g}.lofi"
    if out.is_file():
        return out
    torch.manual_seed(0)
    classes = ["a", "b", "c", "d"]
    enc = create_encoder(encoder)
    hd = create_head(head, in_dim=enc.feature_dim, num_classes=len(classes), num_snippets=window)
    spec = ModelSpec(classes=classes, encoder=encoder, encoder_options={}, head=head, head_options={},
                     feature_dim=enc.feature_dim, num_snippets=window, frame_size_px=frame_size_px,
                     frames_per_snippet=2, frame_stride=2,
                     postprocess={"method": "soft_nms_gaussian", "iou_threshold": 0.5, "sigma": 0.5, "min_score": 0.001,
                                  "max_detections": 100},
                     windows=WindowSpec(snippets_per_sec=snippets_per_sec, stride_snippets=window // 2))
    return write_model_file(out, spec, encoder_state=enc.state_dict(), head_state=hd.state_dict())


# -- the cases (each run in a child process: `detect.py --child CASE ...`) -------------------------------------
def _sampling(model: Path, video: Path):
    from lofi.data.video import probe_video
    from lofi.infer.detector import Detector

    detector = Detector.load(model)
    info = probe_video(video)
    sampling, chunk_snippets = detector.snippet_spec(info)
    return info, sampling, chunk_snippets


def child_decode_rgb(video: Path, threads: int) -> dict:
    container = av.open(str(video))
    stream = container.streams.video[0]
    _configure(stream, threads)
    n = 0
    with container:
        for frame in container.decode(stream):
            frame.reformat(format="rgb24", threads=threads).to_ndarray()
            n += 1
    return {"decoded": n, "converted": n}


def lofi_frames(model: Path, video: Path, out: Path) -> Path:
    """What lofi's decoding converts for ``model`` on ``video``, written to ``out`` (JSON) for the baseline: the
    indices of the frames it samples (a constant-frame-rate video), the resized size and the centre crop."""
    from lofi.data.sampling import frame_indices_for_cfr, resized_size_px, snippet_times_sec

    info, sampling, _ = _sampling(model, video)
    wanted = np.unique(frame_indices_for_cfr(snippet_times_sec(info.duration_sec, info.fps, sampling), info.fps))
    w, h = resized_size_px(info.width, info.height, sampling.short_side_px)
    out.write_text(json.dumps({"frames": wanted.tolist(), "width": w, "height": h, "crop": sampling.crop_px}))
    return out


def child_decode_sampled(video: Path, threads: int, frames_file: Path) -> dict:
    """Every packet decoded, only the frames lofi samples converted (resize + centre crop), as lofi does; PyAV and
    numpy only (no torch, no lofi)."""
    from av.video.reformatter import Interpolation, VideoReformatter

    plan = json.loads(frames_file.read_text())
    wanted_set = set(plan["frames"])
    w, h, side = plan["width"], plan["height"], plan["crop"]
    x, y = (w - side) // 2, (h - side) // 2
    reformatter = VideoReformatter()
    container = av.open(str(video))
    stream = container.streams.video[0]
    _configure(stream, threads)
    decoded = converted = 0
    with container:
        for frame in container.decode(stream):
            if decoded in wanted_set:
                rgb = reformatter.reformat(frame, width=w, height=h, format="rgb24",
                                           interpolation=Interpolation.BILINEAR, threads=threads).to_ndarray()
                np.ascontiguousarray(rgb[y:y + side, x:x + side])
                converted += 1
            decoded += 1
    return {"decoded": decoded, "converted": converted}


def child_lofi_decode(video: Path, threads: int, model: Path) -> dict:
    from lofi.data.chunked import iter_snippet_chunks

    info, sampling, chunk_snippets = _sampling(model, video)
    decoded = converted = seeks = chunks = 0
    for chunk in iter_snippet_chunks(video, sampling, chunk_snippets=chunk_snippets, info=info, threads=threads):
        decoded += chunk.clip.num_decoded_frames
        converted += chunk.clip.num_converted_frames
        seeks += chunk.clip.num_seeks
        chunks += 1
    return {"decoded": decoded, "converted": converted, "seeks": seeks, "chunks": chunks}


def child_model_alone(video: Path, threads: int, model: Path, torch_threads: int | None) -> dict:
    """The model's work alone on random frames of the video's snippet count: the encoder in batches of lofi
    detect's (default 4 chunks), then the head over the windows, with lofi detect's torch threads."""
    import torch

    from lofi.data.video import probe_video
    from lofi.infer.detector import Detector
    from lofi.models.encoders.base import normalize_frames

    info = probe_video(video)
    detector = Detector.load(model, decode_threads=threads, torch_threads=torch_threads)
    sampling, chunk_snippets = detector.snippet_spec(info)
    torch.set_num_threads(detector.model_threads())
    spec = detector.spec
    chunk = torch.randint(0, 256, (chunk_snippets, spec.frames_per_snippet, spec.frame_size_px, spec.frame_size_px,
                                   3), dtype=torch.uint8).permute(0, 1, 4, 2, 3)  # as a decoded chunk's layout
    start = time.perf_counter()
    total, features = sampling.num_snippets, []
    with torch.inference_mode():
        for first in range(0, total, detector.batch_size * chunk_snippets):
            count = min(detector.batch_size, math.ceil((total - first) / chunk_snippets))
            frames = torch.stack([chunk] * count)  # as Detector._encode batches chunks
            features.extend(detector.encoder(normalize_frames(frames)).float())
        encoder_sec = time.perf_counter() - start
        detector._candidates("v", torch.cat(features, dim=1)[:, :total], info.duration_sec)
    seconds = time.perf_counter() - start
    return {"encoder_sec": encoder_sec, "torch_threads": torch.get_num_threads(), "seconds": seconds}


def _configure(stream, threads: int) -> None:  # as lofi.data.sampling.configure_threads
    if threads == 1:
        stream.codec_context.thread_count = 1
    else:
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads


# -- running them ---------------------------------------------------------------------------------------------
@dataclass
class Result:
    name: str
    seconds: float
    peak_rss_mb: float
    video_sec: float
    note: str = ""
    inner_seconds: float | None = None  # the work alone, timed inside the process (no start-up, no imports)
    cpu_seconds: float | None = None  # user + system CPU time of the whole process

    @property
    def throughput(self) -> float:
        return self.video_sec / self.seconds


def run_case(cmd: list[str], cpus: set[int], env: dict[str, str]) -> tuple[float, float, dict]:
    """Wall seconds, peak RSS (MB) and the JSON the child printed last (if any), with the child's CPU seconds
    (user + system, all its threads) added as ``cpu_seconds``."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, cwd=REPO,
                            preexec_fn=lambda: os.sched_setaffinity(0, cpus))
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with exit status {proc.returncode}")
    text = out.decode()
    lines = text.strip().splitlines()
    try:
        extra = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:  # lofi detect: its own timing line, "... detections in 12.3 s"
        found = re.search(r"detections in ([0-9.]+) s", text)
        extra = {"seconds": float(found.group(1))} if found else {}
    extra["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    return seconds, usage.ru_maxrss / 1024, extra


def child_cmd(case: str, video: Path, threads: int, model: Path | None = None) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", case, "--video", str(video),
           "--decode-threads", str(threads)]
    return cmd + (["--model", str(model)] if model is not None else [])


def detect_cmd(video: Path, model: Path, threads: int, out: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "lofi", "detect", str(video), "--model", str(model), "--output", str(out), "-q",
            "--decode-threads", str(threads), *extra]


def detect_threads(cores: int, decode_threads: int) -> int:
    """lofi detect's default torch threads on ``cores`` (as ``Detector.model_threads``, torch's default = cores)."""
    return max(1, cores - max(decode_threads, 1))


def describe_machine(cpus: set[int]) -> str:
    import torch

    model = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return (f"CPU: {model}, {os.cpu_count()} logical cores, cases pinned to CPUs {sorted(cpus)}; "
            f"Python {platform.python_version()}; torch {torch.__version__} "
            f"({torch.get_num_threads()} intra-op threads by default); PyAV {av.__version__} "
            f"(FFmpeg {av.ffmpeg_version_info})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "lofi-bench" / "detect",
                        help="where the videos and model files are cached")
    parser.add_argument("--duration-sec", type=float, default=3600.0, help="length of the long video")
    parser.add_argument("--short-sec", type=float, default=300.0,
                        help="length of the short video for the peak-RSS comparison (0: skip)")
    parser.add_argument("--snippets-per-sec", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    parser.add_argument("--window", type=int, default=32, help="snippets per window (L; a chunk of decoding)")
    parser.add_argument("--frame-size", type=int, default=96, help="frame side of the model (px)")
    parser.add_argument("--encoder", default="tsm_resnet18_slim")
    parser.add_argument("--head", default="actionformer")
    parser.add_argument("--decode-threads", type=int, default=1)
    parser.add_argument("--torch-threads", nargs="+", default=["auto"],
                        help="lofi detect --torch-threads, one detect row each (auto: its default, the cores "
                             "left by the decoder)")
    parser.add_argument("--cpus", type=int, nargs="+", default=None, help="CPU ids every case is pinned to")
    parser.add_argument("--detect-args", nargs=argparse.REMAINDER, default=[],
                        help="extra arguments of lofi detect (last on the line)")
    parser.add_argument("--skip-lofi-decode", action="store_true", help="leave out lofi's decoding alone")
    parser.add_argument("--skip-model-alone", action="store_true", help="leave out the model alone")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--video", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        cases = {"decode-rgb": lambda: child_decode_rgb(args.video, args.decode_threads),
                 "decode-sampled": lambda: child_decode_sampled(args.video, args.decode_threads, args.model),
                 "lofi-decode": lambda: child_lofi_decode(args.video, args.decode_threads, args.model),
                 "model-alone": lambda: child_model_alone(args.video, args.decode_threads, args.model,
                                                          None if args.torch_threads[0] == "auto"
                                                          else int(args.torch_threads[0]))}
        if args.child in ("lofi-decode", "model-alone"):  # imports (torch) outside the timed work
            import lofi.data.chunked  # noqa: F401
            import lofi.infer.detector  # noqa: F401
        start = time.perf_counter()
        result = cases[args.child]()
        result.setdefault("seconds", time.perf_counter() - start)
        print(json.dumps(result))
        return

    cpus = set(args.cpus) if args.cpus else os.sched_getaffinity(0)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), *filter(None, [env.get("PYTHONPATH")])])
    video = make_video(args.work, args.duration_sec)
    short = make_video(args.work, args.short_sec) if args.short_sec else None
    from lofi.data.video import probe_video

    info = probe_video(video)
    print(describe_machine(cpus))
    print(f"video: {video} ({info.width}x{info.height}, {info.fps:g} fps, {info.num_frames} frames, "
          f"{info.duration_sec:.1f} s); decode threads {args.decode_threads}; model {args.encoder} + {args.head}, "
          f"{args.frame_size} px, "
          f"F=2 r=2, windows of L={args.window}\n", flush=True)
    threads = args.decode_threads
    print(f"load average before: {os.getloadavg()[0]:.2f} (1 min; other work on the machine skews every row)\n")
    seconds, rss, extra = run_case(child_cmd("decode-rgb", video, threads), cpus, env)
    reference = Result("PyAV decode + rgb24, every frame", seconds, rss, info.duration_sec,
                       f"decoded {extra['decoded']}, converted {extra['converted']}",
                       extra["seconds"], extra["cpu_seconds"])
    print(_row_header())
    print(_row(reference, None), flush=True)
    for sps in args.snippets_per_sec:
        model = make_model(args.work, snippets_per_sec=sps, window=args.window, frame_size_px=args.frame_size,
                           encoder=args.encoder, head=args.head)
        plan = lofi_frames(model, video, args.work / f"frames_{video.stem}_sps{sps:g}.json")
        seconds, rss, extra = run_case(child_cmd("decode-sampled", video, threads, plan), cpus, env)
        base = Result(f"sps={sps:g}: PyAV decode + lofi's frames", seconds, rss, info.duration_sec,
                      f"decoded {extra['decoded']}, converted {extra['converted']}",
                       extra["seconds"], extra["cpu_seconds"])
        print(_row(base, base), flush=True)
        if not args.skip_lofi_decode:
            seconds, rss, extra = run_case(child_cmd("lofi-decode", video, threads, model), cpus, env)
            print(_row(Result(f"sps={sps:g}: lofi decoding alone (iter_snippet_chunks)", seconds, rss,
                              info.duration_sec, f"decoded {extra['decoded']}, converted {extra['converted']}, "
                                                 f"seeks {extra['seeks']}, chunks {extra['chunks']}",
                              extra["seconds"], extra["cpu_seconds"]), base), flush=True)
        if not args.skip_model_alone:
            cmd = child_cmd("model-alone", video, threads, model) + ["--torch-threads", args.torch_threads[0]]
            seconds, rss, extra = run_case(cmd, cpus, env)
            print(_row(Result(f"sps={sps:g}: the model alone, random frames", seconds, rss, info.duration_sec,
                              f"encoder {extra['encoder_sec']:.1f} s, torch threads {extra['torch_threads']}",
                              extra["seconds"], extra["cpu_seconds"]), base), flush=True)
        for torch_threads in args.torch_threads:
            extra_args = list(args.detect_args)
            if torch_threads != "auto":
                extra_args += ["--torch-threads", str(torch_threads)]
            label = f"sps={sps:g}: lofi detect, torch threads {torch_threads}"
            if torch_threads == "auto":
                label += f" ({detect_threads(len(cpus), threads)})"
            out = args.work / f"detections_sps{sps:g}_t{torch_threads}.json"
            seconds, rss, extra = run_case(detect_cmd(video, model, threads, out, extra_args), cpus, env)
            print(_row(Result(label, seconds, rss, info.duration_sec, inner_seconds=extra.get("seconds"),
                              cpu_seconds=extra["cpu_seconds"]), base),
                  flush=True)
            if short is not None and torch_threads == args.torch_threads[0]:
                short_info = probe_video(short)
                seconds, rss, extra = run_case(detect_cmd(short, model, threads, out.with_suffix(".short.json"),
                                                      extra_args), cpus, env)
                print(_row(Result(f"{label}, {short_info.duration_sec:g} s video", seconds, rss,
                                  short_info.duration_sec, inner_seconds=extra.get("seconds"),
                              cpu_seconds=extra["cpu_seconds"]), None), flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


def _row_header() -> str:
    return ("| case | seconds | video s / s | ratio vs decode alone | work s | work ratio | CPU s | peak RSS MB "
            "| notes |\n|---|---:|---:|---:|---:|---:|---:|---:|---|")


def _row(r: Result, base: Result | None) -> str:
    ratio = f"{base.seconds / r.seconds:.2f}x" if base is not None else ""
    inner = f"{r.inner_seconds:.1f}" if r.inner_seconds is not None else ""
    inner_ratio = (f"{base.inner_seconds / r.inner_seconds:.2f}x"
                   if base is not None and base.inner_seconds and r.inner_seconds else "")
    cpu_text = f"{r.cpu_seconds:.1f}" if r.cpu_seconds is not None else ""
    return (f"| {r.name} | {r.seconds:.1f} | {r.throughput:.0f} | {ratio} | {inner} | {inner_ratio} | {cpu_text} "
            f"| {r.peak_rss_mb:.0f} | {r.note} |")


if __name__ == "__main__":
    main()

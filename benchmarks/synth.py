"""Synthetic dataset generation speed: frames/s of rendering + H.264 encoding, in one process and with a pool.

    python benchmarks/synth.py [--videos 6] [--classes 4] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import platform
import tempfile

import av

from lofi.data.synthetic import SyntheticConfig, generate_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    config = SyntheticConfig(num_videos=args.videos, num_classes=args.classes, seed=0)
    print(f"{platform.processor() or platform.machine()}, PyAV {av.__version__}; "
          f"{config.width_px}x{config.height_px} px, {config.fps:g} fps, {args.videos} videos")
    print(f"{'workers':>7} {'frames':>7} {'seconds':>8} {'frames/s':>9}")
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as out:
            result = generate_dataset(out, config, workers=workers, progress=False)
        print(f"{workers:>7} {result.num_frames:>7} {result.seconds:>8.2f} {result.frames_per_sec:>9.0f}")


if __name__ == "__main__":
    main()

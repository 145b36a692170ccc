"""Train the tiny problem of ``_tiny.py`` in a subprocess (plain python or torchrun); save the final weights.

Prints and flushes ``micro EPOCH INDEX`` for each micro-batch, ``resumed EPOCH BATCH STEP`` after a resume and
``done`` at the end. Usage: ``python _train_script.py RUN_DIR OUT.pt [--noisy] [--sleep S] [--accum K]
[--micro-batch B] [--ckpt-every N] [--epochs E] [--no-resume]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _tiny  # noqa: E402

from lofi.runtime import distributed as D  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("out")
    parser.add_argument("--noisy", action="store_true")
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--accum", type=int, default=1)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--ckpt-every", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--none-at", action="append", default=[], help="EPOCH,BATCH,RANK yielding None")
    parser.add_argument("--no-resume", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    D.init_distributed()

    def wrap(loss_fn):
        def loss_and_print(model, batch, info):
            print(f"micro {info.epoch} {info.micro_batch}", flush=True)
            if args.sleep:
                time.sleep(args.sleep)
            return loss_fn(model, batch, info)
        return loss_and_print

    none_at = tuple(tuple(int(v) for v in spec.split(",")) for spec in args.none_at)
    trainer = _tiny.make_trainer(args.run_dir, micro_batch=args.micro_batch, accum=args.accum, epochs=args.epochs,
                                 ckpt_every=args.ckpt_every, noisy=args.noisy, none_at=none_at, wrap_loss=wrap)
    trainer.fit(resume=not args.no_resume)
    if trainer.resumed_from is not None:
        print(f"resumed {trainer.resumed_from.name}", flush=True)
    if D.is_main_process():
        torch.save(trainer.model.state_dict(), args.out)
    D.cleanup()
    print("done", flush=True)


if __name__ == "__main__":
    main()

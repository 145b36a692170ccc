"""Stalled losses are reported: a term flat near its start warns once, naming the stage and the term."""

import logging

from lofi.train.stall import StallWatch


def _records(**terms: list[float]) -> list[dict]:
    epochs = len(next(iter(terms.values())))
    return [{"kind": "epoch", "epoch": e, **{f"train_{k}": v[e] for k, v in terms.items()}} for e in range(epochs)]


def _watch(records: list[dict]) -> StallWatch:
    watch = StallWatch(stage="runs/x/stage3_head_frozen")
    for end in range(1, len(records) + 1):  # as the trainer calls it: after every epoch
        watch.check(records[:end])
    return watch


def test_a_term_flat_near_its_start_warns_once_naming_stage_and_term(caplog):
    # the stalled regression branch of the issue: 0.62, then 0.60 for the rest of the run; the focal loss learns
    records = _records(loss=[1.5, 1.1, 0.95, 0.9, 0.88, 0.86, 0.85],
                       cls_loss=[0.9, 0.5, 0.35, 0.3, 0.28, 0.26, 0.25],
                       reg_loss=[0.62, 0.60, 0.60, 0.601, 0.60, 0.60, 0.60], num_positives=[40.0] * 7)
    with caplog.at_level(logging.WARNING, logger="lofi.train"):
        watch = _watch(records)
    assert [s.term for s in watch.stalls] == ["reg_loss"]
    assert (watch.stalls[0].since_epoch, watch.stalls[0].epoch) == (1, 4)  # 0.62 -> 0.60 is a 3% drop; then flat
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "stage3_head_frozen" in warnings[0] and "reg_loss" in warnings[0] and "0.6" in warnings[0]


def test_healthy_curves_and_low_plateaus_do_not_warn():
    falling = [0.9 * 0.8 ** e for e in range(15)]
    slow_start = [1.70, 1.63, 1.55, 1.41, 1.11, 0.77, 0.61, 0.48]  # a measured stage-1 loss
    plateau_low = [0.6, 0.2, 0.1, 0.09, 0.09, 0.09, 0.09, 0.09]  # converged: flat, but far below its start
    # a measured C-long stage 2 (the saw-tooth is the S / T / ST cycle): slow, but at half its start by epoch 6
    c_long = [0.4715, 0.3662, 0.2806, 0.2634, 0.3318, 0.2497, 0.2449, 0.295, 0.2403, 0.2452, 0.3018, 0.2311, 0.2275,
              0.2782, 0.2189, 0.2361]
    for values in (falling, slow_start, plateau_low, c_long):
        assert _watch(_records(loss=values)).stalls == []


def test_a_flat_tail_of_the_learning_rate_schedule_is_not_a_stall(caplog):
    # measured: G-TAD's snippet classification in a 16-epoch C-long stage 2 (warm-up 2, cosine), at 0.7 of its start
    snippet_cls = [0.404, 0.3803, 0.3704, 0.392, 0.3495, 0.339, 0.3699, 0.324, 0.3111, 0.3499, 0.3026, 0.288, 0.342,
                   0.2922, 0.2836, 0.3308]
    lr = [7.81e-06, 0.000258, 0.0005, 0.000494, 0.000475, 0.000445, 0.000406, 0.000358, 0.000306, 0.00025, 0.000194,
          0.000142, 9.41e-05, 5.45e-05, 2.48e-05, 6.27e-06]
    records = [{**r, "lr": rate} for r, rate in zip(_records(snippet_cls=snippet_cls, num_snippets=[32.0] * 16), lr)]
    assert _watch(records).stalls == []
    # the same flat values while the learning rate is still high are a stall
    constant = [{**r, "lr": 5e-4} for r in _records(snippet_cls=snippet_cls[:4] + [0.3704] * 12)]
    assert [s.term for s in _watch(constant).stalls] == ["snippet_cls"]


def test_too_few_epochs_and_non_finite_values_are_left_alone():
    assert _watch(_records(loss=[1.0, 1.0, 1.0])).stalls == []
    assert _watch(_records(loss=[1.0, float("nan"), 1.0, 1.0, 1.0])).stalls == []

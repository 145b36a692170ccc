"""The training commands' argument handling: bad configs and missing inputs exit 2 with a message."""

from __future__ import annotations

import pytest

from lofi.cli import main


@pytest.mark.parametrize("argv, message", [
    (["pretrain", "synthetic", "-o", "train.optim.lr_steps=3"], "did you mean 'train.optim.lr_step_epochs'?"),
    (["run", "no-such-preset"], "no such config file, and not a preset"),
    (["train", "synthetic", "-o", "data.annotations=/nonexistent/annotations.json"], "not found"),
])
def test_bad_configs_exit_2_with_the_reason(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_train_head_needs_features(tmp_path, capsys):
    annotations = tmp_path / "a.csv"
    annotations.write_text("video,start,end,label,subset\nv1,1,2,a,training\nv2,1,2,a,validation\n")
    argv = ["train-head", "synthetic", "--features", str(tmp_path / "features"), "-o", f"data.annotations={annotations}",
            "-o", f"out_dir={tmp_path}"]
    assert main(argv) == 2
    assert "features folder not found" in capsys.readouterr().err

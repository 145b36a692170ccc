"""Training: the three LoFi stages, the training engine, fidelity schedules, checkpoints, distributed set-up."""

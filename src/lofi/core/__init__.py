"""What several layers share and every layer may import: the ground truth of a window (:class:`SegmentTargets`),
fidelities and their schedules, segment IoU on tensors, the proposal-map candidate grids, and the heads' typed raw
outputs (:mod:`lofi.core.raw_outputs`), which name their decoder.

Torch and the standard library only; imports nothing of lofi but ``config``, ``io`` and ``errors`` (see
``docs/architecture.md``)."""

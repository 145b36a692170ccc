"""The run machinery that training and inference share: the run context (config, classes, device, logs), the
distributed helpers, run identity and the folder lock, and the builders of encoders, detectors and frame caches.

Above the library's computing layers (``models``, ``data``, ``eval``, ``postprocess``) and below ``infer`` and
``train``, which both import it; it imports neither (see ``docs/architecture.md``)."""

"""The training loop: ``KeypointModule``, checkpoints that know their model, fault-tolerant callbacks, schedules,
progress lines."""

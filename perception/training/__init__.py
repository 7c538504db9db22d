"""Training and evaluation of the detection + depth network (``perception train``/``eval``).

* :mod:`perception.training.config`: the typed YAML configuration of a run;
* :mod:`perception.training.data`: synthetic cache, datasets, batches;
* :mod:`perception.training.loop`: the :class:`~perception.training.loop.Trainer`;
* :mod:`perception.training.metrics`: detection AP (pycocotools) and depth metrics;
* :mod:`perception.training.evaluate`: running a checkpoint over a drive and scoring it.

See docs/training.md.
"""

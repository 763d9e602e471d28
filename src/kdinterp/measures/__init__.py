"""The study's measurements, one package per measure; the registry of all of them is :mod:`.registry`.

A measure's package face (``measures/<name>/__init__.py``) declares, in one place and without
importing torch: its params section (a frozen dataclass), its output files, the frozen record of
its summary file (written by the measure, read by every consumer), ``run`` for one model (which
imports the implementation, ``measures/<name>/compute.py``, when called) and ``read``, its per-model
numbers. :class:`~kdinterp.measures.base.Measure` is that declaration; the layout, the CLI, the
results loader and the report iterate :data:`kdinterp.measures.registry.MEASURES`.
"""

"""The library functions behind the DVC stages, one module per stage family.

Each function takes the validated :class:`~kdinterp.core.params.Params` and the explicit input/output
paths that ``dvc.yaml`` declares, assembles data, models and options, calls the science modules
and writes exactly the declared outputs, atomically. ``kdinterp.cli`` only parses options and
calls these. Each stage in ``dvc.yaml`` depends on its own module here.
"""

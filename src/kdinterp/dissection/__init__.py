"""Network Dissection (Bau et al., CVPR 2017) of one layer on a Broden-layout probe set.

Reading order as in NetDissect-Lite (``research/dissection.md`` §1): activations -> thresholds ->
tally -> tables, in two passes over the probe set, with one forward pass of the model:

1. the forward pass, the thresholds (:mod:`~kdinterp.dissection.thresholds`) and each unit's
   top-activating images (:mod:`~kdinterp.dissection.topimages`); the layer's activations are kept
   (:mod:`~kdinterp.dissection.activations`: in memory, or in a float32 memmap like Lite's
   ``<layer>.mmap``, §3.1);
2. the tally (:mod:`~kdinterp.dissection.upsample`, :mod:`~kdinterp.dissection.tally`) from the
   kept activations and the label planes (or, with ``activations="recompute"``, a second forward pass).

Further tallies (:mod:`~kdinterp.dissection.variants`: other quantiles, the rotated-basis control)
read the same kept activations and the same label planes, and the main tally can be split into
blocks of probe images for the probe bootstrap (:mod:`~kdinterp.dissection.sensitivity`).

Memory is bounded by the batch, the per-unit top-k buffers, a fixed upsampling budget and the
in-memory activation cap, whatever the number of probe images.

The engine is :mod:`kdinterp.dissection.engine`; this package face imports nothing, so that the Broden
reader (:mod:`kdinterp.dissection.broden`) loads without torch.
"""

"""Feature-based distillers of the study: AT, FT, CRD and SSKD, each with or without logit KD.

Han et al. (ICML 2023), ``research/paper.md`` §3.3: "feature-based KD methods with and without
an added logit-distillation term" (prediction P10). Every method is a
:class:`~kdinterp.training.distill.Distiller` whose loss is

    ``loss_ce + [loss_kd] + <feature terms>``,

where ``alpha = 0`` ("without logit KD") gives ``loss_ce = CE(y, z_s)`` alone and ``alpha > 0``
("with logit KD") adds exactly :func:`kdinterp.training.losses.kd_terms` (``(1 - alpha) * CE`` and
``alpha * T^2 * KL``; torchdistill's ``KDLoss`` calls ``1 - alpha`` its ``alpha``). Feature terms are
computed with torchdistill 1.1.5's loss modules (the library the paper's code used) on features
read by forward hooks:

* ``at``: ``loss_at`` on layer3 and layer4 (``ATLoss``); no preliminary stage.
* ``ft``: ``loss_ft`` on layer4 factors (``FTLoss``, ``Paraphraser4FactorTransfer``,
  ``Translator4FactorTransfer``); ``prepare`` trains the paraphraser (1 epoch).
* ``crd``: ``loss_crd`` on avgpool embeddings (``CRDLoss``, ``Normalizer4CRD``; the negative
  sampler is ours); ``prepare`` records the training labels.
* ``sskd``: ``loss_ss``, ``loss_tf`` on rotated copies of the batch (``SSKDLoss``,
  ``AuxSSKDLoss``); ``prepare`` trains the teacher's self-supervision head (30 epochs).

Options (``params.yaml``) are validated by each method's ``Options`` (``ATOptions``, ``FTOptions``,
``CRDOptions``, ``SSKDOptions``, in its module), whose defaults are the paper's
torchdistill configs (KD_XAI, ``research/paper.md`` §9). One deliberate difference for all four:
the CE weight is ``1 - alpha`` (1.0 without logit KD), where KD_XAI's AT and CRD configs use 0.1
and 0.0; see each class.

The method table, :mod:`kdinterp.training.methods`, names each method's class; this face imports nothing.
"""

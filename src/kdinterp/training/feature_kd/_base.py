"""What the feature-based distillers share: a frozen teacher, the logit terms, hooked features,
and the seeded training of an auxiliary module in ``prepare``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from kdinterp.core.progress import log, progress_bar
from kdinterp.training.data import make_loader
from kdinterp.training.distill import Distiller, check_classes
from kdinterp.training.hooks import retain_layer
from kdinterp.training.losses import kd_terms

__all__ = ["FeatureDistiller", "dataset_labels", "fc_in_features", "full_precision", "layer_channels", "run_hooked",
           "train_auxiliary"]


class FeatureDistiller(Distiller):
    """A student, a frozen teacher, and the study's logit terms.

    Every feature method adds its own term(s) to :meth:`logit_terms`:

    * ``alpha == 0`` ("without logit KD"): ``{"loss_ce": CE(y, z_s)}``;
    * ``alpha > 0`` ("with logit KD"): exactly :func:`kdinterp.training.losses.kd_terms`, i.e.
      ``{"loss_ce": (1 - alpha) * CE, "loss_kd": alpha * T^2 * KL(p_t^T || p_s^T)}``, the paper's
      form (torchdistill's ``KDLoss(alpha=a)`` weights the *hard* label: ``a = 1 - alpha``).

    Han et al. (ICML 2023) run every feature method with and without such a term
    (``research/paper.md`` §3.3); the CE weight ``1 - alpha`` is ours (see each method).
    Losses are computed in float32 even under bf16 autocast.

    The teacher is in eval mode whatever ``train()`` is called with and has no gradients;
    auxiliary modules that ``prepare`` trains and then freezes (listed by
    :meth:`frozen_modules`) behave the same way. They are *not* under ``teacher.``, so they are
    checkpointed with :meth:`trainable_state_dict`, and ``prepare`` need not run again on resume.
    """

    #: The frozen dataclass of the method's ``options:`` (set by each method).
    Options: type | None = None

    def __init__(self, student: nn.Module, teacher: nn.Module, temperature: float, alpha: float) -> None:
        super().__init__(student)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.teacher = teacher.eval().requires_grad_(False)
        self.temperature = float(temperature)
        self.alpha = float(alpha)

    @classmethod
    def from_recipe(cls, student: nn.Module, teacher: nn.Module, recipe: Any, options: Any, num_classes: int,
                    num_samples: int) -> FeatureDistiller:
        """The study's constructor (:mod:`kdinterp.training.methods`): the recipe's ``temperature`` and
        ``alpha``, and the validated ``options`` (``num_samples`` is CRD's, which overrides this).

        Raises:
            ValueError: a network outputs another number of classes than ``num_classes``.
        """
        check_classes(student, teacher, num_classes)
        return cls(student, teacher, recipe.temperature, recipe.alpha, options)

    def frozen_modules(self) -> list[nn.Module]:
        """Auxiliary modules trained in :meth:`prepare` and frozen afterwards (none by default)."""
        return []

    def train(self, mode: bool = True) -> FeatureDistiller:
        """Set the student's (and trainable aux modules') mode; teacher and frozen modules stay in eval."""
        super().train(mode)
        self.teacher.eval()
        for module in self.frozen_modules():
            module.eval()
        return self

    def learnable_parameters(self) -> list[nn.Parameter]:
        """Everything but the teacher and the modules frozen after :meth:`prepare`."""
        return [p for name, p in self.named_parameters() if not name.startswith("teacher.") and p.requires_grad]

    def logit_terms(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                    targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"loss_ce"}`` for ``alpha == 0``, else :func:`~kdinterp.training.losses.kd_terms` (``loss_ce``, ``loss_kd``)."""
        student_logits, teacher_logits = student_logits.float(), teacher_logits.float()
        if self.alpha == 0.0:
            return {"loss_ce": F.cross_entropy(student_logits, targets)}
        return kd_terms(student_logits, teacher_logits, targets, self.temperature, self.alpha)

    @torch.no_grad()
    def teacher_forward(self, images: torch.Tensor,
                        layers: Sequence[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Teacher logits ``(N, K)`` and the outputs of ``layers``, without gradients (one pass)."""
        return run_hooked(self.teacher, images, layers)

    def student_forward(self, images: torch.Tensor,
                        layers: Sequence[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Student logits ``(N, K)`` and the outputs of ``layers`` (with gradients)."""
        return run_hooked(self.student, images, layers)


def run_hooked(model: nn.Module, images: torch.Tensor,
               layers: Sequence[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run ``model`` once and return its output and the outputs of the named submodules.

    Hooks are installed for this call only (:func:`kdinterp.training.hooks.retain_layer`), so the model
    carries no hooks once distillation is over.
    """
    with contextlib.ExitStack() as stack:
        retained = {name: stack.enter_context(retain_layer(model, name)) for name in dict.fromkeys(layers)}
        output = model(images)
        return output, {name: r.get() for name, r in retained.items()}


@contextlib.contextmanager
def full_precision(like: torch.Tensor) -> Iterator[None]:
    """Compute a loss in float32 even inside a (CUDA bf16) autocast region; cast inputs with ``.float()``."""
    with torch.autocast(like.device.type, enabled=False):
        yield


def layer_channels(model: nn.Module, name: str, role: str) -> int:
    """Channels of the output of ``model.<name>``: those of its last BatchNorm2d (or Conv2d).

    That is the output width of a torchvision ResNet stage (``layer1`` .. ``layer4``).

    Raises:
        ValueError: no such layer, or it holds neither BatchNorm2d nor Conv2d.
    """
    try:
        module = model.get_submodule(name)
    except AttributeError:
        children = ", ".join(n for n, _ in model.named_children())
        raise ValueError(f"the {role} has no layer '{name}' (top-level layers: {children})") from None
    norms = [m.num_features for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    convs = [m.out_channels for m in module.modules() if isinstance(m, nn.Conv2d)]
    if not norms and not convs:
        raise ValueError(f"cannot tell the channels of the {role}'s layer '{name}': it has no conv or norm layer")
    return norms[-1] if norms else convs[-1]


def fc_in_features(model: nn.Module, role: str) -> int:
    """Width of the penultimate (``avgpool``) features of a torchvision ResNet: ``fc.in_features``."""
    fc = getattr(model, "fc", None)
    if not isinstance(fc, nn.Linear) or not isinstance(getattr(model, "avgpool", None), nn.Module):
        raise ValueError(f"the {role} needs torchvision ResNet's 'avgpool' and 'fc' modules")
    return fc.in_features


def dataset_labels(dataset: Dataset) -> torch.Tensor:
    """Class index of every sample, ``(len(dataset),)`` int64.

    Read from ``dataset.targets`` (ImageFolder), through ``torch.utils.data.Subset``, or, for any
    other data set, by loading every sample once.
    """
    if isinstance(dataset, torch.utils.data.Subset):
        return dataset_labels(dataset.dataset)[torch.as_tensor(dataset.indices, dtype=torch.long)]
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return torch.as_tensor(targets, dtype=torch.long).reshape(-1)
    return torch.tensor([int(dataset[i][1]) for i in range(len(dataset))], dtype=torch.long)  # type: ignore[arg-type]


@contextlib.contextmanager
def _forked_rng(device: torch.device) -> Iterator[None]:
    """Leave the global RNG state as it was after the block (CPU, and ``device`` if CUDA)."""
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield


def train_auxiliary(module: nn.Module, batch_loss: Callable[[torch.Tensor], torch.Tensor], train_set: Dataset,
                    device: torch.device, seed: int, *, epochs: int, batch_size: int, lr: float, momentum: float,
                    weight_decay: float, milestones: Sequence[int] = (), gamma: float = 0.1,
                    label: str = "prepare") -> list[float]:
    """Train ``module`` alone with SGD (a preliminary stage such as FT's paraphraser); then freeze it.

    Deterministic given ``seed``: the module is re-initialised (``reset_parameters``) from
    ``seed``, and epoch ``e`` shuffles and augments with seed ``seed * 1000 + 500 + e`` (the
    training epochs use ``seed * 1000 + e``). The global RNG state is restored afterwards.
    The learning rate is ``lr * gamma ** (number of milestones <= epoch)`` (torch's MultiStepLR).

    Args:
        module: the auxiliary module (already on ``device``).
        batch_loss: maps a batch of images ``(B, 3, H, W)`` on ``device`` to a scalar loss.
        train_set: yields ``(image, target)`` (or ``(image, target, index)``), augmented.
        device: where to train.
        seed: base seed.
        epochs, batch_size, lr, momentum, weight_decay, milestones, gamma: the SGD recipe.
        label: shown in log lines.

    Returns:
        Mean loss of each epoch. Afterwards the module is in eval mode with ``requires_grad=False``.
    """
    history: list[float] = []
    with _forked_rng(device):
        torch.manual_seed(seed)
        for sub in module.modules():
            if hasattr(sub, "reset_parameters"):
                sub.reset_parameters()
        module.requires_grad_(True).train()
        optimizer = torch.optim.SGD(module.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
        for epoch in range(epochs):
            for group in optimizer.param_groups:
                group["lr"] = lr * gamma ** sum(epoch >= m for m in milestones)
            epoch_seed = seed * 1000 + 500 + epoch
            torch.manual_seed(epoch_seed)
            loader = make_loader(train_set, batch_size, shuffle=True, seed=epoch_seed,
                                 drop_last=len(train_set) > batch_size)  # type: ignore[arg-type]
            total = count = 0.0
            with progress_bar(f"{label} {epoch + 1}/{epochs}", total=len(loader)) as advance:
                for batch in loader:
                    images = batch[0].to(device, non_blocking=True)
                    loss = batch_loss(images)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"{label}: loss is {loss.item()} in epoch {epoch + 1}")
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    total += float(loss.detach()) * len(images)
                    count += len(images)
                    advance(1, f"loss {float(loss.detach()):.4f}")
            history.append(total / max(count, 1))
            log(f"{label} epoch {epoch + 1}/{epochs}: loss {history[-1]:.4g}")
        optimizer.zero_grad(set_to_none=True)
    module.requires_grad_(False).eval()
    return history

"""kdinterp: knowledge distillation and model interpretability, reproduced as a DVC pipeline."""

__version__ = "0.1.0"

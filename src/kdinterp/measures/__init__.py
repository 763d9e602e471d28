"""The per-model measurements of the study, one module per measure."""

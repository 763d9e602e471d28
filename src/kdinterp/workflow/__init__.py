"""Operations on the study as a whole, outside the pipeline: profiles of params.yaml, the DVC remote."""

"""What a run's outputs say: results, predictions, figures, REPRODUCTION.md, the HTML report."""

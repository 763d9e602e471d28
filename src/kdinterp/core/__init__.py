"""The foundations: errors, params, files, the numerical environment, the study contract."""

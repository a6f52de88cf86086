"""The team's own package: the pipeline and the transformer it uses."""

"""The pipeline's stages, one module each; each exposes a `COMMAND` and a stage function."""

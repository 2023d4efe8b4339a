"""Command groups of the `watchword` CLI, one module each."""

"""Pure logic: no web framework, no database or cache driver."""

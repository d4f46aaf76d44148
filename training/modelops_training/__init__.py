"""modelops training component."""

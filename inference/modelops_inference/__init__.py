"""modelops inference component."""

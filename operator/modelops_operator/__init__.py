"""modelops operator component."""

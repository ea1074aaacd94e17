"""The built-in image plugin (hooks are added below as the host lands)."""

"""Shipped run presets (YAML); ``lofi.config.load_config("<name>")`` reads them."""

"""Device profiles shipped with edgepose (YAML files read with importlib.resources)."""

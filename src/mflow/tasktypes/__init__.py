"""Task types: the contract (base.py), the registry of built-ins and plugins (registry.py),
and the built-in types. Nothing is imported here: the run path loads only what it uses."""

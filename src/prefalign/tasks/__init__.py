"""Built-in tasks: data generated in code, with a programmatic verifier."""

"""torch model -> graph IR (imports torch; one of torch's few doors)."""

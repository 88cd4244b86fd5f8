from .addon import register, unregister  # noqa: F401  (the extension entry point lives in addon/)

"""mirflow: reproducible machine-learning pipelines for music data.

The `mirflow` package holds the plain, typed stage logic (no Prefect import);
`tasks/` wraps it as Prefect tasks and `flows/` composes those into pipelines.
"""

__version__ = "0.1.0"

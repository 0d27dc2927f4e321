"""mflow: run a DAG of batch tasks (shell, SQL, Spark) and record every attempt."""

__version__ = "0.1.0"

"""Prefect tasks: thin wrappers that parse at the edge and call core, storage and hosts."""

from g2d.tasks.logs import forward_g2d_logs

forward_g2d_logs()

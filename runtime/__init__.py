"""What keeps a running process healthy and observable beside its adapters and worker: the
periodic work of the cluster (run by the elected leader only) and the /healthz endpoint.
run_bot.py wires them; they import storage and config, and nothing imports them but run_bot.py."""

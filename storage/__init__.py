"""Persistence: the database (jobs, users, outputs, message refs, deliveries) and the blob store."""

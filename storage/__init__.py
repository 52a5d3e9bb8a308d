"""Persistence: the database (jobs, users, outputs, message refs, deliveries), a job's typed result (results.JobResult) and the blob store."""

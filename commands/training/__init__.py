"""/train: training runs queued from pictures people send (`train`), and reading those pictures
and ZIPs safely within their limits (`data`).

May import: `commands.frame`, `commands.jobs`.
"""

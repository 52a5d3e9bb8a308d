"""People and places: /me, /link and /unlink (`linking`), /place (a chat's own rules), /admin
(`admin`, with roles, the audit log and withheld pictures in `admin_people`).

May import: `commands.frame`, `commands.jobs`.
"""

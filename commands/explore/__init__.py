"""Ways to explore: /compare, permutations, --repeat, --chaos, --draft and Enhance.

Each draws several takes on one request (or a cheap take first and the real one after), so they
sit together, apart from the commands that make one picture.

May import: `commands.frame` and `commands.jobs`.
"""

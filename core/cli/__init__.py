"""The command line, ``python -m core <command>``: one module per group of
commands.
"""


EXIT_BAD_INPUT = 2   # exit status of every command for bad input (one line on stderr)

"""The command line: ``app`` holds the one parser and the one dispatch table; each command is a
module of its own; ``output`` renders scan results (table, JSON).  Commands import what they
need inside the command, so ``relaycert --help`` stays fast.

May import: everything below it.
"""

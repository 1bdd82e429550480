"""The command line: ``app`` holds the table of commands and builds the one parser from it; each
command is a module of its own that declares its arguments (the contract: ``base``); ``output``
renders scan results (table, JSON).  Commands import what they need inside the command, so
``relaycert --help`` stays fast.

May import: everything below it.
"""

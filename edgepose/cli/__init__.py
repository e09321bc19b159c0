"""The ``edgepose`` command line: one module ``cmd_<name>.py`` per subcommand."""

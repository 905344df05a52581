"""The ``brand-listener`` command line: one module per subcommand group."""

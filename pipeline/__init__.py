"""affectflow's data side: the stages that move data (prepare, extract, split, train, report) and the CLI."""

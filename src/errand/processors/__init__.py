"""Job processors: what a job does (parse -> do -> record), one per job kind."""

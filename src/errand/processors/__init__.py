"""Workers: one processor per job kind (parse -> do -> record) and the process that runs them."""

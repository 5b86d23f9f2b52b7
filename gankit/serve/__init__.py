"""The browser explorer (`gankit serve RUN_DIR`)."""

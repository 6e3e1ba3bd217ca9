"""The application shell: the command line, the service that runs one member, the wiring of
processors into an engine, processor plugins and the Python API."""

"""pfdiff's fuzzing side: the bytes -> Scenario decoder, the atheris target, campaigns, the
findings store, and the `pfdiff` command."""

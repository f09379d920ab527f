"""msstore's backends, importable as ``msstore.backends.<name>``; each is loaded only when used."""

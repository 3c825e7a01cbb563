"""GitHub sign-in: allauth's GitHub provider, with URLs read from settings at request time."""

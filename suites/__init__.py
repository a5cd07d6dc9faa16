"""rendergate's validation suites: a package, so that pytest imports them as rendergate.suites.*
wherever rendergate is installed, never clashing with a user's own test files of the same name."""

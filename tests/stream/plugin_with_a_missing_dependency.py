"""A plugin module whose own import fails, for ``test_plugins``."""

import no_such_dependency  # noqa: F401

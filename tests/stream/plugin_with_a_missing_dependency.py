"""A plugin module whose own import fails, for ``test_plugins``: on a dependency whose name
begins like the module's own, so the error must not pass for a wrong entry."""

import plugin_with  # noqa: F401

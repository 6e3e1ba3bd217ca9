"""How a bot talks to chatstream: publish events with key and trace context, and await or
stream the responses."""

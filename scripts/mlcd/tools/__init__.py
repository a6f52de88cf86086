"""Adapters, one per external program. A stage never shells out itself: it asks an adapter,
and the adapter is where a missing program becomes exit code 3 with the way to get it."""

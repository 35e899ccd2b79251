"""Implementation of jinit. Everything public is re-exported by `jinit`."""

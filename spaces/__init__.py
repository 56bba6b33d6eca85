"""Search spaces per rule family, as data."""

"""Great Expectations checks on the data and on the dissection tables."""

"""Log parsers: one module per format, a line (or record) in, `Event`s out."""

"""The jxcbot command line: the same application functions as the chat handlers, printed as text."""

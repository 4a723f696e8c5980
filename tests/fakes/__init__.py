"""Local stand-ins for the chat platforms' HTTP APIs, used by the tests."""
